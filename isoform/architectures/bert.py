"""BERT (Devlin et al., 2018): a post-LayerNorm Transformer encoder over word + position +
token-type embeddings, with a tanh pooler on the first token and the task heads of transformers.

RoBERTa, XLM-RoBERTa, CamemBERT and ELECTRA share this encoder and subclass `Bert`, changing
only what differs (position ids, embedding size, head names).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from ..errors import ConfigError
from ..ir import Tensor, fn
from ..layers import (
    activation,
    attention_mask,
    dropout,
    embedding,
    feed_forward,
    layer_norm,
    linear,
    linear_rules,
    multi_head_attention,
    tanh_pooler,
    unembed,
)
from ..weights import Rule
from .base import ArchConfig, Architecture, known_activation, norm_rules, register, same


class BertConfig(ArchConfig):
    """`transformers.BertConfig` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 30522
    hidden_size: PositiveInt = 768
    num_hidden_layers: PositiveInt = 12
    num_attention_heads: PositiveInt = 12
    intermediate_size: PositiveInt = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: PositiveInt = 512
    type_vocab_size: NonNegativeInt = 2
    layer_norm_eps: PositiveFloat = 1e-12
    pad_token_id: NonNegativeInt | None = 0
    is_decoder: bool = False
    position_embedding_type: Literal["absolute"] = "absolute"  # transformers v5 dropped relative_key(_query)

    @field_validator("hidden_act", "summary_activation", check_fields=False)
    @classmethod
    def _known_activation(cls, v: str | None) -> str | None:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> BertConfig:
        self.require_multiple("hidden_size", "num_attention_heads")
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be < vocab_size ({self.vocab_size})")
        if self.extra("add_cross_attention"):
            raise ValueError("add_cross_attention=True (a BERT decoder inside an encoder-decoder) is not supported")
        return self


ENCODER_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value",
                   "attention.output.dense", "intermediate.dense", "output.dense")


@register
class Bert(Architecture):
    model_type = "bert"
    Config = BertConfig
    prefix = "bert."
    tasks = {None: "BertModel", "masked-lm": "BertForMaskedLM", "sequence-classification": "BertForSequenceClassification",
             "token-classification": "BertForTokenClassification", "question-answering": "BertForQuestionAnswering",
             "multiple-choice": "BertForMultipleChoice"}
    head_patterns = (r"^cls\.", r"^classifier\.", r"^qa_outputs\.", r"^pooler\.")
    pooler_param = "pooler.dense.weight"
    decoder = "cls.predictions.decoder"  # the MLM output layer ...
    decoder_bias = "cls.predictions.bias"  # ... and the bias it adds (tied to decoder.bias)
    config: BertConfig

    @property
    def embedding_dim(self) -> int:
        return self.config.hidden_size

    @property
    def hidden_dropout(self) -> float:
        """``hidden_dropout_prob``: after the embeddings and each sublayer, before its residual add."""
        return self.config.number("hidden_dropout_prob", 0.0, 0.0, 1.0)

    @property
    def classifier_dropout(self) -> float:
        """Dropout before a classifier: ``classifier_dropout``, else ``hidden_dropout_prob``."""
        return self.config.number("classifier_dropout", self.hidden_dropout, 0.0, 1.0)

    # -- backbone -------------------------------------------------------------------------------
    def positions(self, ids: Tensor) -> Tensor:
        """Absolute positions 0..seq-1 (broadcast over the batch)."""
        return ids.builder.add("iota", shape=[ids.shape[1]], axis=0, dtype="i64")

    def embedding_sum(self, ids: Tensor, token_types: Tensor | None) -> Tensor:
        """Word + token-type + position embeddings, before the LayerNorm."""
        c, dim = self.config, self.embedding_dim
        x = embedding(ids, "embeddings.word_embeddings", c.vocab_size, dim, vocab_parallel=True)
        ids.builder.tap("inputs_embeds", x)
        if token_types is not None:
            x = x + embedding(token_types, "embeddings.token_type_embeddings", c.type_vocab_size, dim)
        positions = ids.builder.tap("position_ids", self.positions(ids))
        return x + embedding(positions, "embeddings.position_embeddings", c.max_position_embeddings, dim)

    def embeddings(self, ids: Tensor, token_types: Tensor | None, **inputs: Tensor) -> Tensor:
        """`embedding_sum` (given any further graph ``inputs``) through ``embeddings.LayerNorm``."""
        x = self.embedding_sum(ids, token_types, **inputs)
        x = layer_norm(x, "embeddings.LayerNorm", self.embedding_dim, self.config.layer_norm_eps)
        return dropout(x, self.hidden_dropout)

    def layer(self, x: Tensor, name: str, mask: Any) -> Tensor:
        """One post-LN block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""
        c, dim = self.config, self.config.hidden_size
        a = self.block_attention(x, f"{name}.attention.self", mask)
        a = dropout(linear(a, f"{name}.attention.output.dense", dim, dim, shard="row"), self.hidden_dropout)
        x = layer_norm(a + x, f"{name}.attention.output.LayerNorm", dim, c.layer_norm_eps)
        h = feed_forward(x, f"{name}.intermediate.dense", f"{name}.output.dense", dim, c.intermediate_size, c.hidden_act)
        return layer_norm(dropout(h, self.hidden_dropout) + x, f"{name}.output.LayerNorm", dim, c.layer_norm_eps)

    def block_attention(self, x: Tensor, name: str, mask: Any) -> Tensor:
        """The attention sublayer of a block, before its output projection (``mask`` is what
        `encoder` passes each layer: here the padding mask)."""
        c = self.config
        return multi_head_attention(x, name, c.hidden_size, c.num_attention_heads, mask, causal=c.is_decoder)

    def encoder(self, x: Tensor, mask: Tensor) -> Tensor:
        m = attention_mask(mask)
        for i in range(self.config.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), f"encoder.layer.{i}", m)
        return x.builder.tap("hidden_states", self.encoder_norm(x))

    def encoder_norm(self, x: Tensor) -> Tensor:
        """The norm after the last layer: none (Megatron-BERT's ``encoder.ln``)."""
        return x

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool,
                 **inputs: Tensor) -> dict[str, Tensor]:
        x = self.encoder(self.embeddings(ids, token_types, **inputs), mask)
        out = {"last_hidden_state": x}
        if pooler:
            out["pooler_output"] = tanh_pooler(x, "pooler.dense", self.config.hidden_size)
        return out

    # -- heads ----------------------------------------------------------------------------------
    def uses_pooler(self, task: str | None) -> bool:
        return task in (None, "sequence-classification", "multiple-choice")

    def head(self, task: str, states: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        return getattr(self, "head_" + task.replace("-", "_"))(states)

    def lm_decoder(self, x: Tensor) -> Tensor:
        """Vocabulary logits from [.., embedding_dim] states: tied to the word embeddings unless
        ``tie_word_embeddings`` is false (then the decoder has its own weight and bias)."""
        c, g = self.config, x.builder
        shape = [c.vocab_size, self.embedding_dim]
        own_bias = self.decoder_bias == f"{self.decoder}.bias"
        if c.tie_word_embeddings:
            return unembed(x, g.param("embeddings.word_embeddings.weight", shape), g.param(self.decoder_bias, [c.vocab_size]))
        if not own_bias:
            g.param(self.decoder_bias, [c.vocab_size])  # kept (unused, as in transformers) so save() writes it back
        return unembed(x, g.param(f"{self.decoder}.weight", shape), g.param(f"{self.decoder}.bias", [c.vocab_size]))

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, dim, name = self.config, self.config.hidden_size, "cls.predictions.transform"
        x = activation(c.hidden_act)(linear(states["last_hidden_state"], f"{name}.dense", dim, dim))
        return {"logits": self.lm_decoder(layer_norm(x, f"{name}.LayerNorm", dim, c.layer_norm_eps))}

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        pooled = dropout(states["pooler_output"], self.classifier_dropout)
        return {"logits": linear(pooled, "classifier", self.config.hidden_size, self.config.num_labels)}

    def head_token_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        x = dropout(states["last_hidden_state"], self.classifier_dropout)
        return {"logits": linear(x, "classifier", self.config.hidden_size, self.config.num_labels)}

    def head_question_answering(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.config.num_labels != 2:  # transformers builds qa_outputs with num_labels outputs, then splits in two
            raise ConfigError(f"question-answering needs num_labels == 2 (start, end), config has {self.config.num_labels}")
        logits = linear(states["last_hidden_state"], "qa_outputs", self.config.hidden_size, 2)
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def head_multiple_choice(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        pooled = dropout(states["pooler_output"], self.classifier_dropout)
        return {"logits": linear(pooled, "classifier", self.config.hidden_size, 1)}

    # -- weights --------------------------------------------------------------------------------
    def embedding_rules(self) -> list[Rule]:
        return [*same("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "embeddings.token_type_embeddings.weight"), *norm_rules("embeddings.LayerNorm")]

    def backbone_rules(self) -> list[Rule]:
        return [*self.embedding_rules(),
                *norm_rules("encoder.layer.{i}.attention.output.LayerNorm", "encoder.layer.{i}.output.LayerNorm"),
                *linear_rules(*(f"encoder.layer.{{i}}.{n}" for n in ENCODER_LINEARS))]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm":
            return [*norm_rules("cls.predictions.transform.LayerNorm", prefixed=False),
                    *linear_rules("cls.predictions.transform.dense", prefixed=False), *self.decoder_rules()]
        if task == "question-answering":
            return linear_rules("qa_outputs", prefixed=False)
        return linear_rules("classifier", prefixed=False) if task else []

    def decoder_rules(self) -> list[Rule]:
        names = [f"{self.decoder}.weight", f"{self.decoder}.bias", self.decoder_bias]
        return same(*dict.fromkeys(names), prefixed=False)

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        pooler_rules = linear_rules(self.pooler_param.removesuffix(".weight")) if pooler and self.pooler_param else []
        return [*self.backbone_rules(), *pooler_rules, *self.head_rules(task)]

    def tied(self, task: str | None) -> dict[str, str]:
        if task != "masked-lm" or not self.config.tie_word_embeddings:
            return {}
        ties = {f"{self.decoder}.weight": "embeddings.word_embeddings.weight"}
        if self.decoder_bias != f"{self.decoder}.bias":
            ties[f"{self.decoder}.bias"] = self.decoder_bias
        return ties


def first_token_classifier(x: Tensor, name: str, dim: int, labels: int, act: str) -> Tensor:
    """RoBERTa/ELECTRA sentence head: ``out_proj(act(dense(x[:, 0])))``."""
    return linear(activation(act)(linear(x[:, 0], f"{name}.dense", dim, dim)), f"{name}.out_proj", dim, labels)


def squeeze_last(x: Tensor) -> Tensor:
    """[..., 1] -> [...]."""
    return fn.reshape(x, shape=list(x.shape[:-1]))
