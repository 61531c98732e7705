"""`Decoder`: incremental decoding with a static-size KV cache, for decoder-only and encoder-decoder
models alike (the encoder is an optional first stage).

    dec = model.decoder()                                  # a causal-lm or seq2seq-lm Model
    logits = dec.prefill(ids, mask, max_new_tokens=20)     # [batch, vocab] float32 numpy
    logits = dec.step(next_tokens)                         # [batch] int64 -> [batch, vocab]
    dec.reorder(np.repeat(np.arange(batch), beams))        # keep / reorder / expand cache rows

A model hands generation a `DecodingGraphs`: its compiled KV-cached ``decoder`` graph (one graph for
the prefill and every step: seq = prompt length, then 1), the ``encoder`` graph of an encoder-decoder,
and the few numbers decoding needs. Cache names are Optimum's (`isoform.layers.causal.cache_name`):
the decoder graph takes ``past_key_values.*`` and returns the updated caches as ``present.*``; an
encoder graph's outputs ``present.{i}.encoder.*`` feed the decoder's ``past_key_values.{i}.encoder.*``
(cross-attention keys/values, fixed for the whole generation) with the ``encoder_attention_mask``.
Caches stay backend-native between calls; only logits become NumPy. The graphs share the model's
parameter tensors (torch, JAX, TensorFlow: the same native arrays; an ONNX Runtime session holds
its own copy).

Prompts: a decoder-only model is prefilled with the LEFT-padded prompt itself (position ids
``cumsum(mask) - 1``, then + 1 per new token, as transformers' ``generate``); an encoder-decoder
encodes the prompt once and is prefilled with ``decoder_start_token_id``.

On backends that compile per input shape (``Backend.static_shapes``: JAX), shapes are bucketed so
different prompts reuse compiled graphs: decoder-only prompts are left-padded (masked) to a multiple
of ``prompt_bucket``, encoder inputs right-padded to a multiple of ``prompt_bucket`` too, and the
cache holds a multiple of ``cache_bucket`` slots; elsewhere all are exact. Extra padding changes no
result: padded slots are masked for every query, and positions come from the mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..ir import Graph, GraphBuilder, fn
from ..layers.causal import PAST, PRESENT

if TYPE_CHECKING:
    from ..backends import Program

Check = Callable[[Mapping[str, np.ndarray]], None]


@dataclass(frozen=True)
class DecodingGraphs:
    """What a model gives generation. ``decoder``: the compiled KV-cached graph; ``encoder``: the
    compiled encoder graph of an encoder-decoder (None for decoder-only models); ``context_length``:
    the most positions the model's position table covers (None: unbounded); ``start_token``: the
    encoder-decoder's ``decoder_start_token_id``; ``pad_id``: fills encoder-input padding;
    ``check``: validates the prompt and its ``attention_mask`` (InputError naming the input);
    ``source``: the encoder's main input, ``input_ids`` or float features (``input_features``
    [batch, frames, features] of speech models, never padded to buckets: convolutions see padding)."""

    decoder: Program
    vocab_size: int
    context_length: int | None
    check: Check
    encoder: Program | None = None
    start_token: int | None = None
    pad_id: int = 0
    source: str = "input_ids"


class Decoder:
    """Incremental decoding over a model's `DecodingGraphs`; see the module docstring."""

    prompt_bucket: int | None = 16
    cache_bucket: int | None = 64

    def __init__(self, graphs: DecodingGraphs):
        self.graphs = graphs
        self.vocab_size = graphs.vocab_size
        self.context_length = graphs.context_length
        self.start_token = graphs.start_token
        self.source = graphs.source
        self.encoder_decoder = graphs.encoder is not None
        self.backend = graphs.decoder.backend
        if not self.backend.static_shapes:  # eager or dynamic-shape backends compile nothing per shape
            self.prompt_bucket = self.cache_bucket = None
        self._program = graphs.decoder
        graph = self._program.graph
        cross = {_past(n) for n in graphs.encoder.graph.outputs if n.startswith(PRESENT + ".")} if graphs.encoder else set()
        source = graphs.encoder.graph.values[graphs.source].dtype if graphs.encoder else None
        self._float_source = source is not None and source.is_float
        self._source_dtype = source.numpy if self._float_source else np.int64  # what the prompt is cast to
        self._past = {v.name: v for v in graph.inputs if v.name.startswith(PAST + ".") and v.name not in cross}
        self._cross = sorted(cross)
        #: bytes of KV cache per row and position (what a request's size is checked against, before allocating)
        self.cache_bytes_per_position = sum(int(v.shape[1]) * int(v.shape[3]) * v.dtype.numpy.itemsize
                                            for v in self._past.values())
        self._positions = any(v.name == "position_ids" for v in graph.inputs)
        self._reorder_past = self.backend.compile(reorder_graph(graph, {_present(n): n for n in self._past}), {})
        self._reorder_cross = (self.backend.compile(reorder_graph(graph, {_present(n): n for n in self._cross}), {})
                               if cross else None)
        self._cache: dict[str, Any] = {}
        self._fixed: dict[str, Any] = {}  # encoder-decoders: cross keys/values and the encoder mask
        self._rows = np.zeros(0, np.int64)  # source row of each decoder row (its cross keys/values)
        self._mask = np.zeros((0, 0), np.int64)
        self._next = np.zeros(0, np.int64)
        self._slot = self._end = 0

    @property
    def batch_size(self) -> int:
        return self._mask.shape[0]

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int) -> np.ndarray:
        """Start decoding ``input_ids``/``attention_mask`` [batch, seq] (decoder-only: LEFT-padded, mask 0
        on the left pads; encoder-decoder: any padding side) with room for ``max_new_tokens`` steps;
        returns float32 numpy logits [batch, vocab] for the first new token. InputError naming the
        numbers if the positions needed exceed ``context_length``."""
        ids, mask = self._check_prompt(input_ids, attention_mask, max_new_tokens)
        if self.encoder_decoder:
            ids, mask = self._encode(ids, mask)
        else:
            pad = round_up(ids.shape[1], self.prompt_bucket) - ids.shape[1]
            ids, mask = np.pad(ids, ((0, 0), (pad, 0))), np.pad(mask, ((0, 0), (pad, 0)))
        batch, seq = ids.shape
        cache = round_up(seq + max_new_tokens, self.cache_bucket)
        positions = np.where(mask == 0, 0, np.cumsum(mask, axis=1) - 1)
        self._mask = np.ones((batch, cache), np.int64)
        self._mask[:, :seq] = mask
        zeros = {n: np.zeros((batch, v.shape[1], cache, v.shape[3]), v.dtype.numpy) for n, v in self._past.items()}
        self._end, self._next, self._rows = cache, positions[:, -1] + 1, np.arange(batch)
        return self._run(ids, positions, 0, zeros)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row ([batch] int64), return float32 numpy logits [batch, vocab]."""
        tokens = check_step(tokens, self.batch_size, self.vocab_size, self._slot, self._end)
        logits = self._run(tokens.reshape(-1, 1), self._next.reshape(-1, 1), self._slot, self._cache)
        self._next = self._next + 1
        return logits

    def reorder(self, index: np.ndarray) -> None:
        """Row i of the new state is row index[i] of the old (the batch may change, e.g.
        ``np.repeat(np.arange(b), num_beams)`` for beam search). Cross keys/values are gathered only
        when a row changes source (not when beams of one source reorder)."""
        index = check_reorder(index, self.batch_size)
        out = self._reorder_past(index=index, **self._cache)
        self._cache = {n: out[_present(n)] for n in self._past}
        rows = self._rows[index]
        if self._reorder_cross is not None and (rows.shape != self._rows.shape or (rows != self._rows).any()):
            cross = self._reorder_cross(index=index, **{n: self._fixed[n] for n in self._cross})
            self._fixed = {"encoder_attention_mask": self._fixed["encoder_attention_mask"][index],
                           **{n: cross[_present(n)] for n in self._cross}}
        self._rows, self._mask, self._next = rows, self._mask[index], self._next[index]

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the encoder once (input right-padded to the bucket); returns the decoder's first input:
        ``decoder_start_token_id`` per row and its mask."""
        batch, seq = ids.shape[:2]
        if not self._float_source:
            pad = round_up(seq, self.prompt_bucket) - seq
            if self.context_length is not None:
                pad = max(0, min(pad, self.context_length - seq))
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=self.graphs.pad_id)
            mask = np.pad(mask, ((0, 0), (0, pad)))
        cross = self.graphs.encoder(**{self.graphs.source: ids, "attention_mask": mask})
        mask = np.asarray(self.backend.to_numpy(cross["encoder_attention_mask"])) if "encoder_attention_mask" in cross else mask
        self._fixed = {"encoder_attention_mask": mask, **{n: cross[_present(n)] for n in self._cross}}
        return np.full((batch, 1), self.start_token, np.int64), np.ones((batch, 1), np.int64)

    def _run(self, ids: np.ndarray, positions: np.ndarray, slot: int, cache: Mapping[str, Any]) -> np.ndarray:
        extra = {"position_ids": positions} if self._positions else {}
        out = self._program(input_ids=ids, cache_position=np.asarray(slot, np.int64), attention_mask=self._mask,
                            **extra, **self._fixed, **cache)
        self._cache = {n: out[_present(n)] for n in self._past}
        self._slot = slot + ids.shape[1]
        return np.asarray(self.backend.to_numpy(out["logits"]), np.float32)

    def _check_prompt(self, ids: Any, mask: Any, max_new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        ids, mask, name = np.asarray(ids), np.asarray(mask), self.graphs.source
        if ids.ndim != (3 if self._float_source else 2) or not ids.size:
            layout = "[batch, frames, features]" if self._float_source else "[batch, seq] with seq >= 1"
            raise InputError(f"{name} must have shape {layout}, got shape {ids.shape}")
        if mask.shape != ids.shape[:2]:
            raise InputError(f"attention_mask has shape {mask.shape}, but {name} has shape {ids.shape}: they must agree "
                             "in [batch, seq]")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        self.graphs.check({name: ids, "attention_mask": mask})
        limit, seq = self.context_length, 1 if self.encoder_decoder else ids.shape[1]
        if limit is not None and seq + max_new_tokens > limit:
            what = (f"max_new_tokens is {max_new_tokens}: {seq + max_new_tokens} decoder positions" if self.encoder_decoder
                    else f"the prompt has {seq} tokens and max_new_tokens is {max_new_tokens}: {seq + max_new_tokens} positions")
            raise InputError(f"{what}, more than the model's context window of {limit} tokens (context length {limit}, "
                             "max_position_embeddings)")
        return ids.astype(self._source_dtype), mask.astype(np.int64)


def _present(name: str) -> str:
    return PRESENT + name.removeprefix(PAST)


def _past(name: str) -> str:
    return PAST + name.removeprefix(PRESENT)


def check_step(tokens: Any, batch: int, vocab: int, slot: int, end: int) -> np.ndarray:
    """The tokens of one decoding step as int64 [batch], or InputError (also for a full or unfilled cache)."""
    if not end:
        raise InputError("step called before prefill")
    tokens = np.asarray(tokens)
    if tokens.shape != (batch,) or tokens.dtype.kind not in "iu":
        raise InputError(f"step takes one integer token per row, shape ({batch},); got {tokens.dtype} of shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab):
        raise InputError(f"step tokens must be in [0, {vocab}) (vocab_size), got {tokens.min()}..{tokens.max()}")
    if slot >= end:
        raise InputError(f"the KV cache is full ({end} slots): prefill was told max_new_tokens for fewer steps")
    return tokens.astype(np.int64)


def check_reorder(index: Any, batch: int) -> np.ndarray:
    """A reorder index as int64, or InputError naming what is wrong with it."""
    index = np.asarray(index)
    if index.ndim != 1 or index.dtype.kind not in "iu" or not index.size:
        raise InputError(f"reorder takes a non-empty 1-d integer index, got {index.dtype} of shape {index.shape}")
    if index.min() < 0 or index.max() >= batch:
        raise InputError(f"reorder index must be in [0, {batch}) (the batch size), got {index.min()}..{index.max()}")
    return index.astype(np.int64)


def round_up(n: int, bucket: int | None) -> int:
    return -(-n // bucket) * bucket if bucket else n


def reorder_graph(graph: Graph, names: Mapping[str, str]) -> Graph:
    """``index`` [rows] and inputs of ``graph`` -> each gathered along the batch axis (row i = row
    index[i]), as output ``out`` for every ``names[out] = input``."""
    g = GraphBuilder(f"{graph.name}:reorder")
    index = g.input("index", ["rows"], "i64")
    values = {v.name: v for v in graph.inputs}
    for out, name in names.items():
        v = values[name]
        g.output(out, fn.gather(g.input(name, v.shape, v.dtype), index, axis=0))
    return g.build()
