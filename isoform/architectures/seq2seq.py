"""The framing shared by encoder-decoder models (T5, BART and its family).

A family subclasses `EncoderDecoder` and writes ``encode`` (embeddings + encoder stack),
``cross_kv`` (one decoder layer's cross-attention keys/values from the encoder states),
``decode`` (embeddings + decoder stack, attending through `isoform.layers.seq2seq`), ``lm_logits``
and the weight rules. `EncoderDecoder.graphs` returns three graphs from that one definition:

* ``"forward"``: the task graph, at parity with the transformers class of the task. Inputs
  ``input_ids``, ``attention_mask`` [batch, seq], ``decoder_input_ids``, ``decoder_attention_mask``
  [batch, target]; outputs ``encoder_last_hidden_state`` and ``last_hidden_state`` (bare model),
  ``logits`` (``seq2seq-lm``: [batch, target, vocab]; ``sequence-classification``: [batch, labels],
  pooled at each row's last ``eos_token_id``) or ``start_logits``/``end_logits``
  (``question-answering``). Missing decoder inputs default to ``input_ids`` shifted right behind
  ``decoder_start_token_id`` and an all-ones mask (transformers does so for BART and the T5 heads;
  T5Model and T5ForConditionalGeneration would raise instead).
* ``"encoder"`` (``seq2seq-lm``): ``input_ids``, ``attention_mask`` -> every decoder layer's
  cross-attention keys/values ``present.{i}.encoder.key`` / ``.value`` [batch, heads, seq, head_dim]:
  run once per input.
* ``"decoder"`` (``seq2seq-lm``): ``input_ids`` [batch, seq] (decoder tokens), ``cache_position``
  (i64 scalar), ``attention_mask`` [batch, cache], ``encoder_attention_mask`` [batch, source], the
  cross keys/values ``past_key_values.{i}.encoder.key``/``.value`` and the static self-attention
  caches ``past_key_values.{i}.decoder.key``/``.value`` -> ``logits`` [batch, vocab] of the last
  position and ``present.{i}.decoder.key``/``.value`` (names: `isoform.layers.causal.cache_name`).
  `isoform.generation.Decoder` runs the last two, the encoder as its first stage.

Hugging Face Optimum's ONNX layout (``seq2seq-lm``; see `isoform.optimum`), one graph
per file and named after it, with growing caches (`isoform.layers.causal`, ``past=True``):

* ``"encoder_model"``: ``input_ids``, ``attention_mask`` -> ``last_hidden_state`` [batch, source, d_model];
* ``"decoder_model"`` (the first step): ``input_ids`` [batch, seq], ``encoder_attention_mask``
  [batch, source], ``encoder_hidden_states`` -> ``logits`` [batch, seq, vocab], ``present.{i}.decoder.*``
  (this call's self-attention keys/values) and ``present.{i}.encoder.*`` (the cross keys/values);
* ``"decoder_with_past_model"``: ``input_ids``, ``encoder_attention_mask`` and
  ``past_key_values.{i}.decoder.*`` [batch, heads, past, head_dim] / ``...{i}.encoder.*`` ->
  ``logits`` and ``present.{i}.decoder.*`` (the past with this call's appended).

Their decoders have no padding mask of their own (Optimum passes none: every row starts at
``decoder_start_token_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import ConfigError, InputError
from ..ir import Graph, GraphBuilder, Tensor, fn
from ..ir import dims as D
from ..ir.dtypes import DType, as_dtype
from ..layers import linear
from ..layers.causal import PAST, PAST_DIM, PRESENT, CausalAttention
from ..layers.seq2seq import CrossAttention, cross_cache_name
from .base import Architecture
from .inputs import Inputs, attention_mask, token_ids

Part = Literal["forward", "encoder", "decoder", "encoder_model", "decoder_model", "decoder_with_past_model"]
OPTIMUM_PARTS: tuple[Part, ...] = ("encoder_model", "decoder_model", "decoder_with_past_model")


class EncoderDecoder(Architecture):
    """Base of encoder-decoder families; see the module docstring."""

    padding_safe = False
    generative_task = "seq2seq-lm"
    head_patterns = (r"^lm_head\.", r"^final_logits_bias$", r"^classification_head\.", r"^qa_outputs\.")

    # -- to implement -----------------------------------------------------------------------------
    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Embeddings and encoder stack: [batch, seq] -> [batch, seq, d_model]."""
        raise NotImplementedError

    def cross_kv(self, states: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        """Decoder layer ``layer``'s cross-attention keys and values [batch, heads, seq, head_dim]."""
        raise NotImplementedError

    def decode(self, ids: Tensor, offset: Tensor | None, attend: CausalAttention, cross: CrossAttention) -> Tensor:
        """Embeddings (positions from ``offset``, the cache slot of the first token, or 0) and the
        decoder stack: [batch, target] -> [batch, target, d_model]."""
        raise NotImplementedError

    def lm_logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    subsamples: ClassVar[bool] = False  # the encoder has fewer states than inputs (speech): see cross_mask

    def cross_mask(self, mask: Tensor, states: Tensor) -> Tensor:
        """The padding mask [batch, source] of the encoder ``states`` that cross-attention reads: the input
        mask, unless the encoder subsamples (then the ``"encoder"`` graph also outputs it as
        ``encoder_attention_mask``)."""
        return mask

    # -- geometry -----------------------------------------------------------------------------------
    @property
    def d_model(self) -> int:
        return int(self.config.d_model)

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def num_decoder_layers(self) -> int:
        raise NotImplementedError

    @property
    def cross_shape(self) -> tuple[int, int]:
        """(heads, head_dim) of the decoder's attention."""
        raise NotImplementedError

    @property
    def decoder_start_token_id(self) -> int:
        start = getattr(self.config, "decoder_start_token_id", None)
        if start is None:
            raise ConfigError(f"config.json of this {self.model_type} model has no decoder_start_token_id: set "
                              "'decoder_start_token_id' (T5 uses the pad token, 0) in config.json or generation_config.json")
        return int(start)

    # -- graphs -------------------------------------------------------------------------------------
    def graphs(self, task: str | None, dtype: DType | str = "float32") -> dict[str, Graph]:
        """``{"forward"}``, plus the ``"encoder"`` and KV-cached ``"decoder"`` graphs for ``seq2seq-lm``."""
        parts: tuple[Part, ...] = ("forward", "encoder", "decoder") if task == "seq2seq-lm" else ("forward",)
        return {part: self.build(task, dtype, part=part) for part in parts}

    def build(self, task: str | None = None, dtype: DType | str = "float32", *, part: Part = "forward") -> Graph:
        """The task graph, or (``seq2seq-lm``) the encoder / cached decoder graphs of generation, or
        the graphs of Optimum's layout (`OPTIMUM_PARTS`)."""
        self.check_task(task)
        if part not in ("forward", "encoder", "decoder", *OPTIMUM_PARTS):
            raise ConfigError(f"unknown graph part {part!r}: forward, encoder, decoder or one of {OPTIMUM_PARTS}")
        if part != "forward" and task != "seq2seq-lm":
            raise ConfigError(f"the {part!r} graph of generation exists for task 'seq2seq-lm' only, not {task!r}")
        suffix = "" if part == "forward" else f":{part}"
        g = GraphBuilder(f"{self.model_type}:{task or 'base'}{suffix}", dtype=as_dtype(dtype),
                         metadata={"model_type": self.model_type, "task": task, "part": part})
        if part == "encoder":
            source, mask = (spec.declare(g) for spec in self.input_specs(task).specs[:2])
            states = self.encode(source, mask)
            for i in range(self.num_decoder_layers):
                k, v = self.cross_kv(states, i)
                g.output(cross_cache_name(PRESENT, i, "key"), k)
                g.output(cross_cache_name(PRESENT, i, "value"), v)
            if self.subsamples:
                g.output("encoder_attention_mask", self.cross_mask(mask, states))
        elif part == "decoder":
            self._decoder(g)
        elif part == "encoder_model":
            source, mask = (spec.declare(g) for spec in self.input_specs(task).specs[:2])
            g.output("last_hidden_state", self.encode(source, mask))
        elif part in OPTIMUM_PARTS:
            self._optimum_decoder(g, past=part == "decoder_with_past_model")
        else:
            self._forward(g, task)
        return g.build()

    def _forward(self, g: GraphBuilder, task: str | None) -> None:
        ids, mask, dec_ids, dec_mask = (spec.declare(g) for spec in self.input_specs(task).specs)
        with g.tap_scope("encoder"):  # taps named as transformers: encoder_hidden_states, decoder_attentions, ...
            states = self.encode(ids, mask)
        cross = CrossAttention(self.cross_mask(mask, states), lambda i: self.cross_kv(states, i))
        with g.tap_scope("decoder"):
            x = self.decode(dec_ids, None, CausalAttention(dec_mask), cross)
        if task is None:
            outputs = {"last_hidden_state": x}
        elif task == "seq2seq-lm":
            outputs = {"logits": self.lm_logits(x)}
        elif task == "sequence-classification":
            outputs = {"logits": self.classify(x, ids)}
        else:
            logits = linear(x, "qa_outputs", self.d_model, 2)
            outputs = {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
        for name, t in {**outputs, "encoder_last_hidden_state": states}.items():
            g.output(name, t)

    def _decoder(self, g: GraphBuilder) -> None:
        ids = g.input("input_ids", ["batch", "seq"], "i64")
        offset = g.input("cache_position", [], "i64")
        attend = CausalAttention(g.input("attention_mask", ["batch", "cache"], "i64"), offset, part="decoder")
        heads, head_dim = self.cross_shape

        def cross_input(i: int) -> tuple[Tensor, Tensor]:
            return tuple(g.input(cross_cache_name(PAST, i, n), ["batch", heads, "source", head_dim], g.dtype)
                         for n in ("key", "value"))

        cross = CrossAttention(g.input("encoder_attention_mask", ["batch", "source"], "i64"), cross_input)
        x = self.decode(ids, offset, attend, cross)
        g.output("logits", self.lm_logits(x[:, -1]))
        for name, t in attend.caches.items():
            g.output(name, t)

    def _optimum_decoder(self, g: GraphBuilder, past: bool) -> None:
        """Optimum's ``decoder_model`` (``past=False``) or ``decoder_with_past_model``; see the module docstring."""
        ids = g.input("input_ids", ["batch", "seq"], "i64")
        cross_mask = g.input("encoder_attention_mask", ["batch", "source"], "i64")
        keys = D.add(PAST_DIM, "seq") if past else "seq"
        ones = g.add("broadcast_to", g.constant(1, "i64"), shape=[ids.shape[0], keys])
        attend = CausalAttention(ones, part="decoder", past=past, present=not past)
        if past:
            heads, head_dim = self.cross_shape

            def kv(i: int) -> tuple[Tensor, Tensor]:
                return tuple(g.input(cross_cache_name(PAST, i, n), ["batch", heads, "source", head_dim], g.dtype)
                             for n in ("key", "value"))
        else:
            states = g.input("encoder_hidden_states", ["batch", "source", self.d_model], g.dtype)
            cross_kv: dict[int, tuple[Tensor, Tensor]] = {}

            def kv(i: int) -> tuple[Tensor, Tensor]:
                cross_kv[i] = self.cross_kv(states, i)
                return cross_kv[i]

        x = self.decode(ids, attend.offset, attend, CrossAttention(cross_mask, kv))
        g.output("logits", self.lm_logits(x))
        for name, t in attend.caches.items():
            g.output(name, t)
        if not past:
            for i, (k, v) in sorted(cross_kv.items()):
                g.output(cross_cache_name(PRESENT, i, "key"), k)
                g.output(cross_cache_name(PRESENT, i, "value"), v)

    def classify(self, x: Tensor, ids: Tensor) -> Tensor:
        """transformers' ``*ForSequenceClassification`` of BART and T5: ``classification_head``
        (dense, tanh, out_proj) on the decoder state at each row's last ``eos_token_id`` in ``input_ids``."""
        g, (b, s) = x.builder, ids.shape
        index = g.add("iota", shape=[s], axis=0, dtype="i64").reshape(1, s)
        eos = fn.eq(ids, g.constant(self.eos_token_id, "i64")).cast("i64")
        last = fn.argmax(index * eos, axis=-1, keepdims=True).cast("i64")
        pooled = fn.where(fn.eq(index, last).reshape(b, s, 1), x, g.constant(0.0, x.dtype)).sum(1)
        d = self.d_model
        h = fn.tanh(linear(pooled, "classification_head.dense", d, d))
        return linear(h, "classification_head.out_proj", d, self.config.num_labels)

    @property
    def eos_token_id(self) -> int:
        eos = getattr(self.config, "eos_token_id", None)
        eos = eos[0] if isinstance(eos, list) and eos else eos
        if eos is None:
            raise ConfigError("sequence-classification pools at the eos token: set 'eos_token_id' in config.json")
        return int(eos)

    # -- inputs -------------------------------------------------------------------------------------
    def shift_right(self, ids: np.ndarray) -> np.ndarray:
        """Decoder inputs from ``ids``: ``decoder_start_token_id`` then ``ids[:, :-1]`` (as transformers)."""
        out = np.empty_like(ids)
        out[:, 0] = self.decoder_start_token_id
        out[:, 1:] = ids[:, :-1]
        return out

    def input_specs(self, task: str | None) -> Inputs:
        """``input_ids``, ``attention_mask`` [batch, seq]; ``decoder_input_ids`` (default: ``input_ids``
        shifted right) and ``decoder_attention_mask`` (default: ones) [batch, target], or [batch, seq]
        for ``sequence-classification`` (it reads decoder states at the input's eos positions)."""
        target = "seq" if task == "sequence-classification" else "target"
        vocab = self.vocab_size
        specs = [token_ids("input_ids", ("batch", "seq"), vocab, self.pad_id), attention_mask(("batch", "seq"), "input_ids"),
                 token_ids("decoder_input_ids", ("batch", target), vocab, self.pad_id,
                           default=lambda arrays: self.shift_right(arrays["input_ids"])),
                 attention_mask(("batch", target), "decoder_input_ids", name="decoder_attention_mask")]
        return Inputs(specs, limits=self.position_limits(("seq", "target")))

    @property
    def max_length(self) -> int | None:
        """Longest sequence the position table covers (None: relative or computed positions)."""
        return None

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        """Classification: every row needs the same number of eos tokens (the pooled positions)."""
        if task == "sequence-classification":
            self._check_eos(inputs)

    def _check_eos(self, inputs: Mapping[str, Any]) -> None:
        counts = (inputs["input_ids"] == self.eos_token_id).sum(1)
        if counts.min() == 0 or len(set(counts.tolist())) != 1:
            raise InputError(f"sequence-classification pools at the last eos token ({self.eos_token_id}): every row of "
                             f"input_ids needs the same, non-zero number of them, got {counts.tolist()}")
