"""MobileBERT (Sun et al., 2020): a deep, thin BERT for devices. Each block works in a narrow
``intra_bottleneck_size`` width between two bottleneck projections of the ``hidden_size`` stream
(``bottleneck.input`` in, ``output.bottleneck`` back out, with the block input as residual); query
and key may share a second bottleneck (``key_query_shared_bottleneck``) or all of q, k, v take the
input bottleneck (``use_bottleneck_attention``); ``num_feedforward_networks`` - 1 extra FFNs are
stacked before the block's own. ``NoNorm`` (``weight * x + bias``, ``normalization_type="no_norm"``)
stands for LayerNorm everywhere but the MLM transform. The input is ``embedding_size`` wide: with
``trigram_input`` each token's embedding is concatenated with its right and left neighbours' (zeros
past the ends) and projected to ``hidden_size`` by ``embeddings.embedding_transformation``. The MLM
decoder multiplies by the word embeddings transposed (``[embedding_size, vocab]``) stacked on
``cls.predictions.dense.weight`` (``[hidden_size - embedding_size, vocab]``). ``pretraining`` is
``MobileBertForPreTraining`` (that MLM head plus the next-sentence head on the pooler).

Quirks kept as transformers has them: with ``layer_norm`` the embedding LayerNorm and each block's
``output.LayerNorm`` use torch's default eps 1e-5 (the others ``layer_norm_eps``); the pooler is the
bare first token when ``classifier_activation`` is false. Not covered:
``MobileBertForNextSentencePrediction`` (next-sentence prediction alone is no isoform task). With
``hidden_size == embedding_size`` the decoder's dense part is empty: isoform skips that [0, vocab]
tensor on load and does not save it (transformers creates it empty)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from pydantic import PositiveInt, model_validator

from ..errors import ConfigError
from ..ir import Tensor, fn
from ..layers import (
    attention_mask,
    embedding,
    feed_forward,
    layer_norm,
    linear,
    linear_rules,
    merge_heads,
    split_heads,
)
from ..weights import Rename, Rule
from .base import norm_rules, register, same
from .bert import Bert, BertConfig

TORCH_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, where transformers passes no eps


class MobileBertConfig(BertConfig):
    """`transformers.MobileBertConfig` keys isoform reads; all others are kept."""

    hidden_size: PositiveInt = 512
    num_hidden_layers: PositiveInt = 24
    num_attention_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 512
    hidden_act: str = "relu"
    embedding_size: PositiveInt = 128
    trigram_input: bool = True
    use_bottleneck: bool = True
    intra_bottleneck_size: PositiveInt = 128
    use_bottleneck_attention: bool = False
    key_query_shared_bottleneck: bool = True
    num_feedforward_networks: PositiveInt = 4
    normalization_type: Literal["no_norm", "layer_norm"] = "no_norm"
    classifier_activation: bool = True

    @property
    def true_hidden_size(self) -> int:
        """The width inside a block: the bottleneck's, else ``hidden_size``."""
        return self.intra_bottleneck_size if self.use_bottleneck else self.hidden_size

    @model_validator(mode="after")
    def _consistent(self) -> MobileBertConfig:  # replaces BERT's: the heads split true_hidden_size
        key = "intra_bottleneck_size" if self.use_bottleneck else "hidden_size"
        self.require_multiple(key, "num_attention_heads")
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be < vocab_size ({self.vocab_size})")
        if (self.use_bottleneck and not self.use_bottleneck_attention and not self.key_query_shared_bottleneck
                and self.intra_bottleneck_size != self.hidden_size):
            raise ValueError(f"use_bottleneck without use_bottleneck_attention or key_query_shared_bottleneck feeds "
                             f"hidden_size ({self.hidden_size}) states to query/key layers of intra_bottleneck_size "
                             f"({self.intra_bottleneck_size}) inputs; transformers fails on it too")
        return self


LAYER = "encoder.layer.{i}"
FFN = "encoder.layer.{i}.ffn.{j}"


@register
class MobileBert(Bert):
    model_type = "mobilebert"
    Config = MobileBertConfig
    prefix = "mobilebert."
    tasks = {None: "MobileBertModel", "masked-lm": "MobileBertForMaskedLM",
             "sequence-classification": "MobileBertForSequenceClassification",
             "token-classification": "MobileBertForTokenClassification",
             "question-answering": "MobileBertForQuestionAnswering",
             "multiple-choice": "MobileBertForMultipleChoice", "pretraining": "MobileBertForPreTraining"}
    config: MobileBertConfig

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_size

    def is_padding_safe(self, task: str | None) -> bool:
        return not self.config.trigram_input  # the last token's trigram would see appended padding

    def resolve(self, keys: Collection[str]) -> None:
        super().resolve(keys)
        if not self.config.classifier_activation:
            self.checkpoint_pooler = True  # the first token itself: no tensor tells whether it is there

    def norm(self, x: Tensor, name: str, dim: int, eps: float | None = None) -> Tensor:
        """``normalization_type``: NoNorm (``x * weight + bias``) or LayerNorm with ``eps`` (torch's default
        when None)."""
        c = self.config
        if c.normalization_type == "layer_norm":
            return layer_norm(x, name, dim, TORCH_LAYER_NORM_EPS if eps is None else eps)
        g = x.builder
        return x * g.param(f"{name}.weight", [dim]) + g.param(f"{name}.bias", [dim])

    # -- backbone -------------------------------------------------------------------------------
    def embeddings(self, ids: Tensor, token_types: Tensor | None, **inputs: Tensor) -> Tensor:
        c, dim = self.config, self.config.hidden_size
        x = embedding(ids, "embeddings.word_embeddings", c.vocab_size, c.embedding_size)
        width = c.embedding_size
        if c.trigram_input:  # [next token, token, previous token], zeros past either end
            x = fn.concat(fn.pad(x[:, 1:], pads=[[0, 0], [0, 1], [0, 0]]), x,
                          fn.pad(x[:, :-1], pads=[[0, 0], [1, 0], [0, 0]]), axis=2)
            width *= 3
        if c.trigram_input or c.embedding_size != dim:
            x = linear(x, "embeddings.embedding_transformation", width, dim)
        else:  # built (unused) by transformers all the same: kept so save() writes it back
            x.builder.param("embeddings.embedding_transformation.weight", [width, dim])
            x.builder.param("embeddings.embedding_transformation.bias", [dim])
        x = x + embedding(self.positions(ids), "embeddings.position_embeddings", c.max_position_embeddings, dim)
        if token_types is not None:
            x = x + embedding(token_types, "embeddings.token_type_embeddings", c.type_vocab_size, dim)
        return self.norm(x, "embeddings.LayerNorm", dim)

    def bottleneck(self, x: Tensor, name: str) -> Tensor:
        c = self.config
        return self.norm(linear(x, f"{name}.dense", c.hidden_size, c.intra_bottleneck_size), f"{name}.LayerNorm",
                         c.intra_bottleneck_size, c.layer_norm_eps)

    def self_attention(self, q: Tensor, k: Tensor, v: Tensor, name: str, mask: Tensor) -> Tensor:
        c, width = self.config, self.config.true_hidden_size
        dims = (width, width, v.shape[-1])
        q, k, v = (split_heads(linear(t, f"{name}.{n}", d, width), c.num_attention_heads)
                   for t, n, d in zip((q, k, v), ("query", "key", "value"), dims))
        return merge_heads(q.builder.tap("attentions", fn.attention(q, k, v, mask)))

    def layer(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        c, width, eps = self.config, self.config.true_hidden_size, self.config.layer_norm_eps
        q = k = v = residual = x
        if c.use_bottleneck:
            residual = self.bottleneck(x, f"{name}.bottleneck.input")
            if c.use_bottleneck_attention:
                q = k = v = residual
                if c.key_query_shared_bottleneck:  # built (unused) by transformers: kept so save() writes it back
                    for p, shape in (("dense.weight", [c.hidden_size, width]), ("dense.bias", [width]),
                                     ("LayerNorm.weight", [width]), ("LayerNorm.bias", [width])):
                        x.builder.param(f"{name}.bottleneck.attention.{p}", shape)
            elif c.key_query_shared_bottleneck:
                q = k = self.bottleneck(x, f"{name}.bottleneck.attention")
        a = self.self_attention(q, k, v, f"{name}.attention.self", mask)
        h = self.norm(linear(a, f"{name}.attention.output.dense", width, width) + residual,
                      f"{name}.attention.output.LayerNorm", width, eps)
        for j in range(c.num_feedforward_networks - 1):
            f = f"{name}.ffn.{j}"
            h = self.norm(feed_forward(h, f"{f}.intermediate.dense", f"{f}.output.dense", width, c.intermediate_size,
                                       c.hidden_act) + h, f"{f}.output.LayerNorm", width, eps)
        out = feed_forward(h, f"{name}.intermediate.dense", f"{name}.output.dense", width, c.intermediate_size,
                           c.hidden_act)
        out = self.norm(out + h, f"{name}.output.LayerNorm", width)
        if c.use_bottleneck:
            out = self.norm(linear(out, f"{name}.output.bottleneck.dense", width, c.hidden_size) + x,
                            f"{name}.output.bottleneck.LayerNorm", c.hidden_size, eps)
        return out

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        x = self.embeddings(ids, token_types)
        m = attention_mask(mask)
        for i in range(self.config.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), LAYER.format(i=i), m)
        out = {"last_hidden_state": x.builder.tap("hidden_states", x)}
        if pooler:
            first = x[:, 0]
            out["pooler_output"] = (fn.tanh(linear(first, "pooler.dense", self.config.hidden_size, self.config.hidden_size))
                                    if self.config.classifier_activation else first)
        return out

    # -- heads ----------------------------------------------------------------------------------
    def uses_pooler(self, task: str | None) -> bool:
        return task == "pretraining" or super().uses_pooler(task)

    def lm_decoder(self, x: Tensor) -> Tensor:
        """``x @ [word_embeddings^T; cls.predictions.dense.weight] + bias``: the first ``embedding_size``
        features through BERT's (tied) decoder, the rest through the dense rows."""
        c, e = self.config, self.config.embedding_size
        if c.hidden_size < e:  # transformers cannot build it either (a dense part of negative size)
            raise ConfigError(f"the MLM head needs embedding_size ({e}) <= hidden_size ({c.hidden_size})")
        if c.hidden_size == e:
            return super().lm_decoder(x)
        dense = x.builder.param("cls.predictions.dense.weight", [c.hidden_size - e, c.vocab_size])
        return super().lm_decoder(x[..., :e]) + x[..., e:] @ dense

    def head_pretraining(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        nsp = linear(states["pooler_output"], "cls.seq_relationship", self.config.hidden_size, 2)
        return {"prediction_logits": self.head_masked_lm(states)["logits"], "seq_relationship_logits": nsp}

    # -- weights --------------------------------------------------------------------------------
    def backbone_rules(self) -> list[Rule]:
        linears = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                   "intermediate.dense", "output.dense", "output.bottleneck.dense", "bottleneck.input.dense",
                   "bottleneck.attention.dense")
        norms = ("attention.output.LayerNorm", "output.LayerNorm", "output.bottleneck.LayerNorm",
                 "bottleneck.input.LayerNorm", "bottleneck.attention.LayerNorm")
        return [*same("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "embeddings.token_type_embeddings.weight"),
                *norm_rules("embeddings.LayerNorm", *(f"{LAYER}.{n}" for n in norms), f"{FFN}.output.LayerNorm"),
                *linear_rules("embeddings.embedding_transformation", *(f"{LAYER}.{n}" for n in linears),
                              f"{FFN}.intermediate.dense", f"{FFN}.output.dense")]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "pretraining":
            return [*self.head_rules("masked-lm"), *linear_rules("cls.seq_relationship", prefixed=False)]
        rules = super().head_rules(task)
        if task == "masked-lm" and self.config.hidden_size > self.config.embedding_size:
            rules.append(Rename("cls.predictions.dense.weight", "cls.predictions.dense.weight", prefixed=False))
        return rules

    def tied(self, task: str | None) -> dict[str, str]:
        return super().tied("masked-lm" if task == "pretraining" else task)
