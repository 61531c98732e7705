"""`Decoder`: incremental decoding of one causal-LM `Model` on its backend, with a static-size KV cache.

    dec = Decoder(model)                                   # model.task == "causal-lm"
    logits = dec.prefill(ids, mask, max_new_tokens=20)     # [batch, vocab] float32 numpy, last position
    logits = dec.step(next_tokens)                         # [batch] int64 -> [batch, vocab]
    dec.reorder(np.repeat(np.arange(batch), beams))        # keep / reorder / expand cache rows

The cache lives in the IR graph (`isoform.architectures.causal`): one graph whose inputs include
the caches and whose outputs are the updated caches, written with ``dynamic_update_slice`` at
``cache_position``. ``prefill`` runs it with seq = prompt length, ``step`` with seq = 1: each
backend compiles it once per shape and reuses it. Caches stay backend-native between calls
(outputs are fed back as inputs); only the logits are converted to NumPy. The graph shares the
model's parameter tensors (torch, JAX, TensorFlow: the same native arrays, no second copy; an ONNX
Runtime session holds its own copy of the initializers).

On backends that compile per input shape (``Backend.static_shapes``: JAX), shapes are bucketed so
different prompts reuse compiled graphs: prompts are left-padded (masked) to a multiple of
``prompt_bucket`` and the cache holds a multiple of ``cache_bucket`` slots; elsewhere both are exact
(torch runs eagerly, TensorFlow and ONNX Runtime take dynamic shapes). Extra left padding changes no result:
padded slots are masked for every query, position ids come from the mask, and sliding windows
count relative distances.

Position ids follow transformers' ``generate``: ``cumsum(mask) - 1`` (0 on padding) for the
prompt, then the last one + 1 per new token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..architectures.causal import CausalLM
from ..errors import ConfigError, InputError
from ..ir import Graph, GraphBuilder, fn
from ..layers.causal import PAST, PRESENT

if TYPE_CHECKING:
    from ..model import Model


class Decoder:
    """Incremental decoding of one causal-LM Model on its backend, with a static-size KV cache."""

    prompt_bucket: int | None = 16
    cache_bucket: int | None = 64

    def __init__(self, model: Model):
        if model.task != "causal-lm":
            raise ConfigError(f"Decoder needs a model loaded with task='causal-lm', this one has task={model.task!r}")
        if not isinstance(model.arch, CausalLM):
            raise ConfigError(f"model_type {model.arch.model_type!r} is not a decoder-only language model")
        self.model = model
        self.vocab_size: int = model.arch.vocab_size
        self.context_length: int = model.arch.max_length
        self.backend = model.backend
        if not self.backend.static_shapes:  # eager or dynamic-shape backends compile nothing per shape
            self.prompt_bucket = self.cache_bucket = None
        graph = model.arch.build("causal-lm", model.dtype, cached=True)
        self.graph = graph
        self._program = self.backend.compile(graph, model.program.native_params())
        self._zeros = {v.name: (v.shape, v.dtype.numpy) for v in graph.inputs if v.name.startswith(PAST)}
        self._present = {PRESENT + name.removeprefix(PAST): name for name in self._zeros}  # output -> input name
        self._reorder = self.backend.compile(reorder_graph(graph, self._present), {})
        self._cache: dict[str, Any] = {}
        self._mask = np.zeros((0, 0), np.int64)
        self._next = np.zeros(0, np.int64)
        self._slot = self._end = 0

    @property
    def batch_size(self) -> int:
        return self._mask.shape[0]

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int) -> np.ndarray:
        """input_ids/attention_mask [batch, seq], LEFT-padded (mask 0 on the left pads). Allocates the static
        cache for seq + max_new_tokens positions (rounded up to a bucket so different lengths reuse compiled
        graphs), runs the prompt, returns float32 numpy logits [batch, vocab] of the last position.
        InputError naming both numbers if seq + max_new_tokens > context_length."""
        ids, mask = self._check_prompt(input_ids, attention_mask, max_new_tokens)
        batch, seq = ids.shape
        pad = round_up(seq, self.prompt_bucket) - seq
        if pad:
            ids = np.pad(ids, ((0, 0), (pad, 0)))
            mask = np.pad(mask, ((0, 0), (pad, 0)))
        cache = round_up(seq + pad + max_new_tokens, self.cache_bucket)
        positions = np.where(mask == 0, 0, np.cumsum(mask, axis=1) - 1)
        self._mask = np.ones((batch, cache), np.int64)
        self._mask[:, :seq + pad] = mask
        zeros = {name: np.zeros((batch, shape[1], cache, shape[3]), dtype) for name, (shape, dtype) in self._zeros.items()}
        self._cache = {}
        self._slot, self._end = seq + pad, cache
        self._next = positions[:, -1] + 1
        return self._run(ids, positions, 0, zeros)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row ([batch] int64), return float32 numpy logits [batch, vocab]."""
        tokens = check_step(tokens, self.batch_size, self.vocab_size, self._slot, self._end)
        logits = self._run(tokens.reshape(-1, 1), self._next.reshape(-1, 1), self._slot, self._cache)
        self._next = self._next + 1
        return logits

    def reorder(self, index: np.ndarray) -> None:
        """Keep/reorder cache rows: row i of the new state is row index[i] of the old (batch size may
        change, e.g. np.repeat(np.arange(b), num_beams) to expand for beam search)."""
        index = check_reorder(index, self.batch_size)
        out = self._reorder(index=index, **self._cache)
        self._cache = {past: out[present] for present, past in self._present.items()}
        self._mask, self._next = self._mask[index], self._next[index]

    def _run(self, ids: np.ndarray, positions: np.ndarray, slot: int, cache: Mapping[str, Any]) -> np.ndarray:
        out = self._program(input_ids=ids, position_ids=positions, cache_position=np.asarray(slot, np.int64),
                            attention_mask=self._mask, **cache)
        self._cache = {past: out[present] for present, past in self._present.items()}
        self._slot = slot + ids.shape[1]
        return np.asarray(self.backend.to_numpy(out["logits"]), np.float32)

    def _check_prompt(self, ids: Any, mask: Any, max_new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = np.asarray(ids), np.asarray(mask)
        if ids.ndim != 2 or not ids.size:
            raise InputError(f"input_ids must have shape [batch, seq] with seq >= 1, got shape {ids.shape}")
        if mask.shape != ids.shape:
            raise InputError(f"attention_mask has shape {mask.shape}, but input_ids has shape {ids.shape}: they must be equal")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        seq = ids.shape[1]
        if seq + max_new_tokens > self.context_length:
            raise InputError(f"the prompt has {seq} tokens and max_new_tokens is {max_new_tokens}: {seq + max_new_tokens} "
                             f"positions, more than this model's context length {self.context_length}")
        self.model.arch.check_inputs({"input_ids": ids, "attention_mask": mask}, "causal-lm")
        return ids.astype(np.int64), mask.astype(np.int64)


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


def reorder_graph(graph: Graph, present: Mapping[str, str]) -> Graph:
    """``index`` [rows] and the caches -> the caches gathered along the batch axis (row i = row index[i])."""
    g = GraphBuilder(f"{graph.name}:reorder")
    index = g.input("index", ["rows"], "i64")
    values = {v.name: v for v in graph.inputs}
    for out, name in present.items():
        v = values[name]
        g.output(out, fn.gather(g.input(name, v.shape, v.dtype), index, axis=0))
    return g.build()
