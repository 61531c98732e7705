"""The framing shared by decoder-only language models (GPT, GPT-2, GPT-Neo, Llama, Mistral, Qwen2).

A family subclasses `CausalLM` and writes ``embed`` (token + absolute position embeddings, if any),
``decoder`` (the blocks and final norm, attending through a `CausalAttention`), the weight rules
and its config. `CausalLM.build` writes two kinds of graph from that one definition:

* the task graph (``"forward"``), at parity with the transformers class of the task: inputs
  ``input_ids``, ``attention_mask`` [batch, seq], positions 0..seq-1 (as transformers' forward
  without ``position_ids``); outputs ``last_hidden_state`` (bare model) or ``logits``
  ([batch, seq, vocab] for ``causal-lm``, [batch, labels] for ``sequence-classification``, pooled at
  the last non-padding token as transformers does);
* the incremental-decoding graph (``"decoder"``, ``causal-lm`` only; see
  `isoform.layers.causal`): inputs ``input_ids``/``position_ids`` [batch, seq], ``cache_position``
  (i64 scalar), ``attention_mask`` [batch, cache] and per layer ``past_key_values.{i}.key``/``.value``;
  outputs ``logits`` [batch, vocab] of the last position only, and the updated caches
  ``present.{i}.key``/``.value``.
  `isoform.generation.Decoder` runs it (prefill and steps: the same graph at two shapes);
* the growing-cache graph (``cached="growing"``, ``causal-lm`` only): Hugging Face Optimum's ONNX
  decoder with past. Inputs ``input_ids``/``position_ids`` [batch, seq], ``attention_mask``
  [batch, keys = past+seq] and per layer ``past_key_values.{i}.key``/``.value`` [batch, kv_heads, past,
  head_dim] (past may be 0: the prefill); outputs ``logits`` [batch, seq, vocab] and
  ``present.{i}.key``/``.value`` = the past with this call's keys/values appended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveInt, model_validator

from ..errors import ConfigError, InputError
from ..ir import Graph, GraphBuilder, Tensor, fn
from ..ir.dtypes import DType, as_dtype
from ..layers import unembed
from ..layers.causal import CausalAttention, growing_mask
from ..weights import Rule
from .base import ArchConfig, Architecture, same


class DecoderConfig(ArchConfig):
    """Keys every decoder-only config has; families add theirs."""

    vocab_size: PositiveInt
    pad_token_id: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _pad_in_vocab(self) -> DecoderConfig:
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be < vocab_size ({self.vocab_size})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The keys config.json had (declared or not), as read: defaults isoform assumed for missing
        keys are not written (``rope_theta: null`` would break transformers' loading, for one)."""
        return self.model_dump(mode="json", exclude_unset=True)


class CausalLM(Architecture):
    """Base of decoder-only families; see the module docstring. Subclasses set ``word_embeddings``
    (graph name of the token embedding, also the tied LM head) and implement ``embed``, ``decoder``
    and ``backbone_rules``."""

    word_embeddings: ClassVar[str]
    head_patterns = (r"^lm_head\.", r"^score\.")
    generative_task = "causal-lm"

    # -- to implement -----------------------------------------------------------------------------
    def embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        raise NotImplementedError

    def decoder(self, x: Tensor, positions: Tensor, attend: CausalAttention) -> Tensor:
        """All blocks and the final norm: [batch, seq, hidden] -> [batch, seq, hidden]."""
        raise NotImplementedError

    def backbone_rules(self) -> list[Rule]:
        raise NotImplementedError

    # -- geometry the decoder needs -----------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.config.vocab_size)

    @property
    def pad_token(self) -> int | None:
        return getattr(self.config, "pad_token_id", None)

    # -- graphs ---------------------------------------------------------------------------------------
    def graphs(self, task: str | None, dtype: DType | str = "float32") -> dict[str, Graph]:
        """``{"forward"}``, plus the KV-cached ``"decoder"`` graph for ``causal-lm``."""
        graphs = {"forward": self.build(task, dtype)}
        if task == "causal-lm":
            graphs["decoder"] = self.build(task, dtype, cached=True)
        return graphs

    def build(self, task: str | None = None, dtype: DType | str = "float32", *,
              cached: bool | Literal["growing"] = False) -> Graph:
        """The task graph, or for ``causal-lm`` the incremental-decoding graph with a static cache
        (``cached=True``) or with Optimum's growing cache (``cached="growing"``)."""
        self.check_task(task)
        if cached not in (False, True, "growing"):
            raise ConfigError(f"cached must be False, True (static cache) or 'growing', got {cached!r}")
        if cached and task != "causal-lm":
            raise ConfigError(f"a KV-cached graph exists for task 'causal-lm' only, not {task!r}")
        suffix = {False: "", True: ":cached", "growing": ":growing"}[cached]
        g = GraphBuilder(f"{self.model_type}:{task or 'base'}{suffix}", dtype=as_dtype(dtype),
                         metadata={"model_type": self.model_type, "task": task, "cached": cached})
        specs = self.input_specs(task)
        ids = specs["input_ids"].declare(g)
        if cached == "growing":
            positions = g.input("position_ids", ["batch", "seq"], "i64")
            mask = g.input("attention_mask", ["batch", "keys"], "i64")
            attend = CausalAttention(growing_mask(mask, ids.shape[1]), past=True)
        elif cached:
            positions = g.input("position_ids", ["batch", "seq"], "i64")
            offset = g.input("cache_position", [], "i64")
            attend = CausalAttention(g.input("attention_mask", ["batch", "cache"], "i64"), offset)
        else:
            mask = specs["attention_mask"].declare(g)
            positions = g.tap("position_ids", g.add("iota", shape=list(ids.shape), axis=1, dtype="i64"))  # [batch, seq]
            attend = CausalAttention(mask)
        x = self.decoder(self.embed(ids, positions), positions, attend)
        if task is None:
            g.output("last_hidden_state", x)
        elif task == "sequence-classification":
            g.output("logits", self.classify(x, ids))
        else:
            g.output("logits", self.lm_head(x[:, -1] if cached is True else x))
            for name, t in attend.caches.items():
                g.output(name, t)
        return g.build()

    def lm_head(self, x: Tensor) -> Tensor:
        """Vocabulary logits: the word embeddings transposed when tied, else ``lm_head.weight``."""
        g = x.builder
        name = f"{self.word_embeddings}.weight" if self.config.tie_word_embeddings else "lm_head.weight"
        return unembed(x, g.param(name, [self.vocab_size, self.hidden_size], sharding=("model", None)))  # vocab-parallel

    def classify(self, x: Tensor, ids: Tensor) -> Tensor:
        """transformers' ``*ForSequenceClassification``: ``score`` (no bias) at the rightmost token that
        is not ``pad_token_id`` (the last token when there is no pad token; the first if all are pads)."""
        g, (b, s) = x.builder, ids.shape
        index = g.add("iota", shape=[s], axis=0, dtype="i64")
        if self.pad_token is None:
            last = fn.eq(index.reshape(1, s), index[-1:].reshape(1, 1)).reshape(1, s, 1)
        else:
            real = fn.ne(ids, g.constant(self.pad_token, "i64")).cast("i64")
            at = fn.argmax(index * real, axis=-1, keepdims=True)
            last = fn.eq(index.reshape(1, s), at.cast("i64")).reshape(b, s, 1)
        pooled = fn.where(last, x, g.constant(0.0, x.dtype)).sum(1)
        labels = self.config.num_labels
        return pooled @ g.param("score.weight", [labels, self.hidden_size]).transpose(1, 0)

    # -- weights --------------------------------------------------------------------------------------
    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        head = {"causal-lm": [] if self.config.tie_word_embeddings else ["lm_head.weight"],
                "sequence-classification": ["score.weight"]}.get(task or "", [])
        return [*self.backbone_rules(), *same(*head, prefixed=False)]

    def tied(self, task: str | None) -> dict[str, str]:
        if task == "causal-lm" and self.config.tie_word_embeddings:
            return {"lm_head.weight": f"{self.word_embeddings}.weight"}
        return {}

    # -- inputs ---------------------------------------------------------------------------------------
    def is_padding_safe(self, task: str | None) -> bool:
        """Appended masked tokens change nothing before them, except where the classifier pools the
        last token because there is no pad token."""
        return not (task == "sequence-classification" and self.pad_token is None)

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        if task == "sequence-classification" and self.pad_token is None and inputs["input_ids"].shape[0] != 1:
            raise InputError(f"sequence-classification of a batch of {inputs['input_ids'].shape[0]} needs pad_token_id "
                             "in config.json (to find each row's last token); this config has none: pass one row "
                             "at a time")

