"""DeBERTa (He et al., 2020): a post-LN BERT encoder whose attention is disentangled: besides the
content-to-content scores, each query reads the embedding of its relative distance to each key
(content-to-position, ``c2p``) and each key the embedding of the distance back (``p2c``), from one
relative-position table shared by all layers (`isoform.layers.disentangled`). Where transformers'
DeBERTa differs from BERT besides:

- embeddings: word (+ absolute positions while ``position_biased_input``) (+ token types when
  ``type_vocab_size > 0``), ``embed_proj`` when ``embedding_size != hidden_size``, LayerNorm, then
  zeroed at padding;
- the attention mask is over (query, key) pairs, so a padded query attends uniformly to every key
  (transformers' ``masked_fill`` with the float minimum), which the padded rows of the outputs show;
- one ``in_proj`` [hidden -> 3 x hidden] without bias laid out per head as (q, k, v), plus
  ``q_bias`` and ``v_bias``; ``pos_proj`` (no bias) and ``pos_q_proj`` for the position side;
- the MLM head is the legacy ``cls.predictions`` (transform to ``embedding_size``, decoder tied to the
  word embeddings) or, with ``legacy=False``, the enhanced mask decoder's ``lm_predictions.lm_head``
  (dense, LayerNorm, then the word embeddings with its own bias);
- sequence classification reads a ``ContextPooler`` (``pooler.dense`` on token 0, ``pooler_hidden_act``).

Refused with a ConfigError: ``talking_head`` (no released checkpoint uses it), ``pos_att_type``
entries other than ``c2p`` / ``p2c``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from ..ir import Tensor, fn
from ..layers import (
    activation,
    embedding,
    layer_norm,
    linear,
    linear_rules,
    merge_heads,
    split_heads,
    unembed,
)
from ..layers.disentangled import distance_rows, row_of_distance, take_by_distance
from ..weights import Rule
from .base import known_activation, norm_rules, register, same
from .bert import Bert, BertConfig

PositionAttention = Literal["c2p", "p2c"]


class DebertaConfig(BertConfig):
    """`transformers.DebertaConfig` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 50265
    layer_norm_eps: PositiveFloat = 1e-7
    type_vocab_size: NonNegativeInt = 0
    relative_attention: bool = False
    max_relative_positions: int = -1
    position_biased_input: bool = True
    pos_att_type: list[PositionAttention] | None = None
    pooler_hidden_act: str = "gelu"
    legacy: bool = True
    embedding_size: PositiveInt | None = None

    @field_validator("pos_att_type", mode="before")
    @classmethod
    def _split_types(cls, v: Any) -> Any:
        """``"p2c|c2p"`` (the form of older config.json files) -> ``["p2c", "c2p"]``, as transformers."""
        return [t.strip() for t in v.lower().split("|")] if isinstance(v, str) else v

    @field_validator("pooler_hidden_act")
    @classmethod
    def _known_pooler_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _deberta_options(self) -> DebertaConfig:
        types = self.pos_att_type or []
        if len(set(types)) != len(types):
            raise ValueError(f"pos_att_type {types} repeats an entry")
        if self.model_type == "deberta" and self.extra("talking_head"):
            raise ValueError("talking_head=True (head-mixing projections of DeBERTa v1) is not supported")
        if self.extra("pooler_hidden_size", self.hidden_size) != self.hidden_size:
            raise ValueError(f"pooler_hidden_size ({self.extra('pooler_hidden_size')}) must equal hidden_size "
                             f"({self.hidden_size}): the classifier reads hidden_size features")
        if not self.legacy and self.embedding_size not in (None, self.hidden_size):
            raise ValueError(f"legacy=False (the enhanced mask decoder's LM head) needs embedding_size "
                             f"({self.embedding_size}) == hidden_size ({self.hidden_size})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """As the base, leaving out an unset ``embedding_size`` (transformers reads a present one as is)."""
        data = super().to_dict()
        return {k: v for k, v in data.items() if k != "embedding_size" or v is not None}

    @property
    def relative_distances(self) -> int:
        """``max_relative_positions``, or ``max_position_embeddings`` when it is below 1 (as transformers)."""
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    @property
    def relative_span(self) -> int:
        """Rows per side of the relative table ``encoder.rel_embeddings`` (it has twice as many)."""
        return self.relative_distances

    def distance_table(self) -> np.ndarray:
        """The relative table's row of each distance (`isoform.layers.disentangled.row_of_distance`)."""
        return row_of_distance(self.relative_span, self.relative_span)


@register
class Deberta(Bert):
    model_type = "deberta"
    Config = DebertaConfig
    prefix = "deberta."
    tasks = {None: "DebertaModel", "masked-lm": "DebertaForMaskedLM",
             "sequence-classification": "DebertaForSequenceClassification",
             "token-classification": "DebertaForTokenClassification", "question-answering": "DebertaForQuestionAnswering"}
    head_patterns = (r"^cls\.", r"^lm_predictions\.", r"^mask_predictions\.", r"^pooler\.", r"^classifier\.",
                     r"^qa_outputs\.")
    pooler_param = None
    config: DebertaConfig

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_size or self.config.hidden_size

    @property
    def max_length(self) -> int | None:
        """Only an absolute position table limits the length; relative distances saturate."""
        return self.config.max_position_embeddings if self.config.position_biased_input else None

    @property
    def ignore_patterns(self) -> tuple[str, ...]:
        unused = () if self.config.position_biased_input else (r"(^|\.)embeddings\.position_embeddings\.weight$",)
        return (*super().ignore_patterns, *unused)

    @property
    def head_dim(self) -> int:
        return self.config.hidden_size // self.config.num_attention_heads

    def is_padding_safe(self, task: str | None) -> bool:
        """A padded query attends uniformly to every key, so padding more changes the padded rows of
        token-level outputs (which transformers returns too); pooled heads read token 0 only."""
        return task in ("sequence-classification", "multiple-choice")

    # -- backbone -------------------------------------------------------------------------------
    def embeddings(self, ids: Tensor, token_types: Tensor | None, **inputs: Tensor) -> Tensor:
        c, dim = self.config, self.embedding_dim
        x = embedding(ids, "embeddings.word_embeddings", c.vocab_size, dim)
        if c.position_biased_input:
            x = x + embedding(self.positions(ids), "embeddings.position_embeddings", c.max_position_embeddings, dim)
        if token_types is not None:
            x = x + embedding(token_types, "embeddings.token_type_embeddings", c.type_vocab_size, dim)
        if dim != c.hidden_size:
            x = linear(x, "embeddings.embed_proj", dim, c.hidden_size, bias=False)
        return layer_norm(x, "embeddings.LayerNorm", c.hidden_size, c.layer_norm_eps)

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool,
                 **inputs: Tensor) -> dict[str, Tensor]:
        keep = fn.ne(mask, mask.builder.constant(0, mask.dtype))
        x = self.embeddings(ids, token_types)
        x = x * keep.cast(x.dtype).reshape(*keep.shape, 1)
        return {"last_hidden_state": self.encoder(x, keep)}

    def encoder(self, x: Tensor, keep: Tensor) -> Tensor:
        """The layers, each given (pair mask [batch, 1, seq, seq], relative rows or None)."""
        pairs = fn.logical_and(keep[:, None, :, None], keep[:, None, None, :])
        context = (pairs, self.relative_rows(x) if self.config.relative_attention else None)
        h = x
        for i in range(self.config.num_hidden_layers):
            h = self.layer(h.builder.tap("hidden_states", h), f"encoder.layer.{i}", context)
            h = self.after_first_layer(h, x, keep) if i == 0 else h
        return h.builder.tap("hidden_states", h)

    def after_first_layer(self, h: Tensor, embedded: Tensor, keep: Tensor) -> Tensor:
        """What follows the first layer, given the embeddings (DeBERTa-v2's ConvLayer); here nothing."""
        return h

    def relative_rows(self, x: Tensor) -> Tensor:
        """The relative table's rows for distances ``-seq .. seq - 1`` of the states ``x``."""
        c = self.config
        table = x.builder.param("encoder.rel_embeddings.weight", [2 * c.relative_span, c.hidden_size])
        return distance_rows(table, x.shape[1], c.distance_table())

    def block_attention(self, x: Tensor, name: str, mask: Any) -> Tensor:
        pairs, rows = mask
        c, g, dim, d = self.config, x.builder, self.config.hidden_size, self.head_dim
        heads = c.num_attention_heads
        b, s, _ = x.shape
        qkv = linear(x, f"{name}.in_proj", dim, 3 * dim, bias=False).reshape(b, s, heads, 3, d)
        q, k, v = (qkv[:, :, :, i].transpose(0, 2, 1, 3) for i in range(3))
        q = q + g.param(f"{name}.q_bias", [dim]).reshape(1, heads, 1, d)
        v = v + g.param(f"{name}.v_bias", [dim]).reshape(1, heads, 1, d)
        return self.disentangled(q, k, v, name, pairs, rows)

    def disentangled(self, q: Tensor, k: Tensor, v: Tensor, name: str, pairs: Tensor, rows: Tensor | None) -> Tensor:
        """softmax((q.k + c2p + p2c) / sqrt(head_dim * (1 + len(pos_att_type)))) @ v over the pair mask."""
        types, heads = self.config.pos_att_type or [], self.config.num_attention_heads
        scale = 1.0 / math.sqrt(q.shape[-1] * (1 + len(types)))
        score = None
        if rows is not None and "c2p" in types:
            keys = split_heads(self.position_projection(rows[None], name, "c2p"), heads)
            score = take_by_distance(q @ keys.transpose(0, 1, 3, 2))
        if rows is not None and "p2c" in types:
            queries = split_heads(self.position_projection(rows[None], name, "p2c"), heads)
            p2c = take_by_distance(k @ queries.transpose(0, 1, 3, 2), by_key=True)
            score = p2c if score is None else score + p2c
        low = q.builder.constant(q.dtype.lowest, q.dtype)
        bias = fn.where(pairs, q.builder.constant(0.0, q.dtype) if score is None else score * scale, low)
        return merge_heads(q.builder.tap("attentions", fn.attention(q, k, v, bias, scale=scale)))

    def position_projection(self, rows: Tensor, name: str, kind: PositionAttention) -> Tensor:
        """The relative rows as keys (``c2p``) or queries (``p2c``) of the layer's attention ``name``."""
        dim = self.config.hidden_size
        if kind == "c2p":
            return linear(rows, f"{name}.pos_proj", dim, dim, bias=False)
        return linear(rows, f"{name}.pos_q_proj", dim, dim)

    # -- heads ----------------------------------------------------------------------------------
    def context_pooler(self, x: Tensor) -> Tensor:
        dim = self.config.hidden_size
        return activation(self.config.pooler_hidden_act)(linear(x[:, 0], "pooler.dense", dim, dim))

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, x, dim = self.config, states["last_hidden_state"], self.config.hidden_size
        if not c.legacy:
            name, g = "lm_predictions.lm_head", x.builder
            h = layer_norm(activation(c.hidden_act)(linear(x, f"{name}.dense", dim, dim)), f"{name}.LayerNorm", dim,
                           c.layer_norm_eps)
            words = g.param("embeddings.word_embeddings.weight", [c.vocab_size, dim])
            return {"logits": unembed(h, words, g.param(f"{name}.bias", [c.vocab_size]))}
        name, out = "cls.predictions.transform", self.embedding_dim
        h = activation(c.hidden_act)(linear(x, f"{name}.dense", dim, out))
        return {"logits": self.lm_decoder(layer_norm(h, f"{name}.LayerNorm", out, c.layer_norm_eps))}

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        pooled = self.context_pooler(states["last_hidden_state"])
        return {"logits": linear(pooled, "classifier", self.config.hidden_size, self.config.num_labels)}

    def head_multiple_choice(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": linear(self.context_pooler(states["last_hidden_state"]), "classifier", self.config.hidden_size, 1)}

    # -- weights --------------------------------------------------------------------------------
    def embedding_rules(self) -> list[Rule]:
        c = self.config
        names = ["embeddings.word_embeddings.weight"]
        names += ["embeddings.position_embeddings.weight"] if c.position_biased_input else []
        names += ["embeddings.token_type_embeddings.weight"] if c.type_vocab_size else []
        projection = linear_rules("embeddings.embed_proj", bias=False) if self.embedding_dim != c.hidden_size else []
        return [*same(*names), *projection, *norm_rules("embeddings.LayerNorm")]

    def attention_rules(self) -> list[Rule]:
        name = "encoder.layer.{i}.attention.self"
        return [*linear_rules(f"{name}.in_proj", f"{name}.pos_proj", bias=False), *linear_rules(f"{name}.pos_q_proj"),
                *same(f"{name}.q_bias", f"{name}.v_bias")]

    def backbone_rules(self) -> list[Rule]:
        layer = "encoder.layer.{i}"
        return [*self.embedding_rules(), *self.attention_rules(), *same("encoder.rel_embeddings.weight"),
                *norm_rules(f"{layer}.attention.output.LayerNorm", f"{layer}.output.LayerNorm"),
                *linear_rules(*(f"{layer}.{n}" for n in ("attention.output.dense", "intermediate.dense", "output.dense")))]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm" and not self.config.legacy:
            name = "lm_predictions.lm_head"
            return [*linear_rules(f"{name}.dense", prefixed=False), *norm_rules(f"{name}.LayerNorm", prefixed=False),
                    *same(f"{name}.bias", prefixed=False)]
        pooler = linear_rules("pooler.dense", prefixed=False) if task in ("sequence-classification", "multiple-choice") else []
        return [*super().head_rules(task), *pooler]

    def tied(self, task: str | None) -> dict[str, str]:
        return super().tied(task) if self.config.legacy else {}
