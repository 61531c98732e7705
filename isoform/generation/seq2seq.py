"""`Seq2SeqDecoder`: incremental decoding of an encoder-decoder `Model` (task ``seq2seq-lm``), with
the interface of `isoform.generation.Decoder`, so the search strategies drive both.

    dec = Seq2SeqDecoder(model)
    logits = dec.prefill(ids, mask, max_new_tokens=20)   # encoder once; logits after decoder_start_token_id
    logits = dec.step(next_tokens)                       # [batch] int64 -> [batch, vocab] float32
    dec.reorder(index)                                   # keep / reorder / expand rows (beam search)

Three compiled graphs over the model's parameter tensors (no copy; `isoform.architectures.seq2seq`):
the encoder graph runs once per input and returns every decoder layer's cross-attention keys and
values; the step graph reads them (fixed for the whole generation) and a static-size self-attention
cache (``cache_bucket``-rounded slots, written at ``cache_position``), and returns the logits of the
last position and the updated cache; a gather graph reorders cache rows. Caches stay backend-native
between calls; only logits become NumPy. On backends that compile per shape, the source is
right-padded (masked) to a multiple of ``source_bucket`` so different input lengths share graphs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..architectures.seq2seq import EncoderDecoder
from ..errors import ConfigError, InputError
from ..layers.seq2seq import PAST, PRESENT
from .decoder import check_reorder, check_step, reorder_graph, round_up

if TYPE_CHECKING:
    from ..model import Model


class Seq2SeqDecoder:
    """Incremental decoding of one encoder-decoder Model; see the module docstring."""

    source_bucket: int | None = 16
    cache_bucket: int | None = 64

    def __init__(self, model: Model):
        if model.task != "seq2seq-lm":
            raise ConfigError(f"Seq2SeqDecoder needs a model loaded with task='seq2seq-lm', this one has task={model.task!r}")
        if not isinstance(model.arch, EncoderDecoder):
            raise ConfigError(f"model_type {model.arch.model_type!r} is not an encoder-decoder model")
        self.model, arch = model, model.arch
        self.vocab_size: int = arch.vocab_size
        self.start_token: int = arch.decoder_start_token_id
        self.backend = model.backend
        if not self.backend.static_shapes:
            self.source_bucket = None
        if self.backend.name == "numpy":
            self.cache_bucket = None
        keys = {p.name for p in model.graph.params}
        params = model.program.native_params()
        self._encoder, self._step = (
            self.backend.compile(graph, {p.name: params[p.name] for p in graph.params})
            for graph in (arch.build("seq2seq-lm", model.dtype, keys, part=part) for part in ("encoder", "step")))
        step = self._step.graph
        self._past = {v.name: v for v in step.inputs if v.name.startswith(PAST)}
        self._cross = [v.name for v in step.inputs if v.name.startswith("cross.")]
        self._reorder_past = self.backend.compile(
            reorder_graph(step, {PRESENT + n.removeprefix(PAST): n for n in self._past}), {})
        self._reorder_cross = self.backend.compile(reorder_graph(step, {f"new.{n}": n for n in self._cross}), {})
        self._cache: dict[str, Any] = {}
        self._fixed: dict[str, Any] = {}  # cross keys/values and the encoder mask: set once per input
        self._rows = np.zeros(0, np.int64)  # source row of each decoder row (its cross keys/values)
        self._mask = np.zeros((0, 0), np.int64)
        self._slot = self._end = 0

    @property
    def batch_size(self) -> int:
        return self._mask.shape[0]

    def prefill(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int) -> np.ndarray:
        """Encode ``input_ids``/``attention_mask`` [batch, seq] (any padding side), allocate the cache for
        ``max_new_tokens`` + 1 decoder positions, run ``decoder_start_token_id``; returns float32 logits
        [batch, vocab] for the first generated token."""
        ids, mask = self._check(input_ids, attention_mask, max_new_tokens)
        batch, seq = ids.shape
        pad = round_up(seq, self.source_bucket) - seq
        if self.model.arch.max_length is not None:
            pad = max(0, min(pad, self.model.arch.max_length - seq))
        if pad:
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=self.model.arch.pad_id)
            mask = np.pad(mask, ((0, 0), (0, pad)))
        cross = self._encoder(input_ids=ids, attention_mask=mask)
        self._fixed = {"encoder_attention_mask": mask, **{n: cross[n] for n in self._cross}}
        self._rows = np.arange(batch)
        self._end = round_up(1 + max_new_tokens, self.cache_bucket)
        self._mask = np.ones((batch, self._end), np.int64)
        self._cache = {n: np.zeros((batch, v.shape[1], self._end, v.shape[3]), v.dtype.numpy) for n, v in self._past.items()}
        return self._run(np.full((batch, 1), self.start_token, np.int64), 0)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token per row ([batch] int64), return float32 numpy logits [batch, vocab]."""
        tokens = check_step(tokens, self.batch_size, self.vocab_size, self._slot, self._end)
        return self._run(tokens.reshape(-1, 1), self._slot)

    def reorder(self, index: np.ndarray) -> None:
        """Row i of the new state is row index[i] of the old (the batch may grow: beam expansion). The
        cross keys/values are gathered only when a row changes source (not when beams reorder)."""
        index = check_reorder(index, self.batch_size)
        out = self._reorder_past(index=index, **self._cache)
        self._cache = {n: out[PRESENT + n.removeprefix(PAST)] for n in self._past}
        rows = self._rows[index]
        if rows.shape != self._rows.shape or (rows != self._rows).any():
            cross = self._reorder_cross(index=index, **{n: self._fixed[n] for n in self._cross})
            self._fixed = {"encoder_attention_mask": self._fixed["encoder_attention_mask"][index],
                           **{n: cross[f"new.{n}"] for n in self._cross}}
            self._rows = rows
        self._mask = self._mask[index]

    def _run(self, ids: np.ndarray, slot: int) -> np.ndarray:
        out = self._step(input_ids=ids, cache_position=np.asarray(slot, np.int64), attention_mask=self._mask,
                         **self._fixed, **self._cache)
        self._cache = {n: out[PRESENT + n.removeprefix(PAST)] for n in self._past}
        self._slot = slot + ids.shape[1]
        return np.asarray(self.backend.to_numpy(out["logits"]), np.float32)

    def _check(self, ids: Any, mask: Any, max_new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = np.asarray(ids), np.asarray(mask)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        self.model.arch.check_inputs({"input_ids": ids, "attention_mask": mask}, "seq2seq-lm")
        limit = self.model.arch.max_length
        if limit is not None and max_new_tokens + 1 > limit:
            raise InputError(f"max_new_tokens is {max_new_tokens}: {max_new_tokens + 1} decoder positions, more than "
                             f"this model's maximum {limit} (max_position_embeddings)")
        return ids.astype(np.int64), mask.astype(np.int64)



def export_onnx(model: Model, directory: str | os.PathLike[str], opset: int | None = None) -> list[Path]:
    """Write the generation graphs of a ``seq2seq-lm`` model as ``encoder.onnx`` (``input_ids``,
    ``attention_mask`` -> ``cross.{i}.key``/``.value``) and ``decoder_step.onnx`` (the step graph:
    see `isoform.architectures.seq2seq`) in ``directory``; returns the two paths."""
    from ..backends.onnx import export_onnx as write

    if model.task != "seq2seq-lm" or not isinstance(model.arch, EncoderDecoder):
        raise ConfigError(f"encoder/decoder-step ONNX graphs exist for encoder-decoder models with task='seq2seq-lm', "
                          f"not model_type {model.arch.model_type!r} with task={model.task!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keys = {p.name for p in model.graph.params}
    params = model.program.numpy_params()
    paths = []
    for part, name in (("encoder", "encoder.onnx"), ("step", "decoder_step.onnx")):
        graph = model.arch.build("seq2seq-lm", model.dtype, keys, part=part)
        meta = {"architecture": model.arch.model_type, "task": "seq2seq-lm", "part": part,
                "decoder_start_token_id": str(model.arch.decoder_start_token_id)}
        paths.append(write(graph, {p.name: params[p.name] for p in graph.params}, directory / name, opset=opset,
                           metadata=meta))
    return paths
