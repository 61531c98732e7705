"""RoFormer (Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding"): BERT's
post-LN encoder without a position table; instead every self-attention rotates its query and key
heads (and values, with ``rotary_value``) by sinusoidal angles of the position, pairwise on adjacent
dims (`isoform.layers.rotary_pairs`), so scores depend on relative offsets. Embeddings are word +
token type + LayerNorm of ``embedding_size`` (default ``hidden_size``), projected by
``embeddings_project`` when the two differ, as ELECTRA; no pooler. The MLM head maps to
``embedding_size`` before the tied decoder; the sentence classifier is dense + ``hidden_act`` +
``out_proj`` on the first token; multiple choice uses transformers' sequence summary (default: the
last token, no projection, no activation). The checkpoint's frozen ``encoder.embed_positions`` table
is recomputed in the graph and skipped on load.

Not covered: ``RoFormerForCausalLM`` (a KV-cached decoder is a `causal.CausalLM`, not this encoder
protocol) and cross-attention (``add_cross_attention``)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt, model_validator

from ..ir import Tensor, fn
from ..layers import (
    activation,
    attention_mask,
    embedding,
    layer_norm,
    linear,
    merge_heads,
    split_heads,
)
from ..layers.rotary_pairs import pair_sinusoids, rotate_pairs
from ..weights import Rule
from .base import norm_rules, register, same
from .bert import Bert, first_token_classifier
from .electra import Electra, ElectraConfig


class RoFormerConfig(ElectraConfig):
    """`transformers.RoFormerConfig` keys isoform reads; all others are kept. A missing or null
    ``embedding_size`` means ``hidden_size``, as transformers."""

    vocab_size: PositiveInt = 50000
    embedding_size: PositiveInt = 768
    hidden_size: PositiveInt = 768
    num_attention_heads: PositiveInt = 12
    intermediate_size: PositiveInt = 3072
    max_position_embeddings: PositiveInt = 1536
    rotary_value: bool = False
    summary_type: Literal["first", "last", "mean"] = "last"  # transformers' getattr defaults
    summary_use_proj: bool = False
    summary_activation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _embedding_size(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("embedding_size") is None:
            return dict(data, embedding_size=data.get("hidden_size", 768))
        return data

    @model_validator(mode="after")
    def _even_heads(self) -> RoFormerConfig:
        head_dim = self.hidden_size // self.num_attention_heads
        if head_dim % 2:
            raise ValueError(f"hidden_size / num_attention_heads ({head_dim}) must be even: rotary embeddings "
                             "rotate pairs of dims (transformers fails on this config too)")
        return self


@register
class RoFormer(Electra):
    model_type = "roformer"
    Config = RoFormerConfig
    prefix = "roformer."
    tasks = {None: "RoFormerModel", "masked-lm": "RoFormerForMaskedLM",
             "sequence-classification": "RoFormerForSequenceClassification",
             "token-classification": "RoFormerForTokenClassification",
             "question-answering": "RoFormerForQuestionAnswering", "multiple-choice": "RoFormerForMultipleChoice"}
    head_patterns = (r"^cls\.", r"^classifier\.", r"^qa_outputs\.", r"^sequence_summary\.")
    ignore_patterns = (*Electra.ignore_patterns, r"(^|\.)encoder\.embed_positions\.weight$")
    decoder = Bert.decoder
    decoder_bias = Bert.decoder_bias
    config: RoFormerConfig

    def embedding_sum(self, ids: Tensor, token_types: Tensor | None) -> Tensor:
        c, dim = self.config, self.embedding_dim
        x = embedding(ids, "embeddings.word_embeddings", c.vocab_size, dim)
        if token_types is not None:
            x = x + embedding(token_types, "embeddings.token_type_embeddings", c.type_vocab_size, dim)
        return x

    def encoder(self, x: Tensor, mask: Tensor) -> Tensor:
        c = self.config
        layer_inputs = (attention_mask(mask), *pair_sinusoids(self.positions(x), c.hidden_size // c.num_attention_heads,
                                                              x.dtype))
        for i in range(c.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), f"encoder.layer.{i}", layer_inputs)
        return x.builder.tap("hidden_states", x)

    def block_attention(self, x: Tensor, name: str, mask: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        """Self-attention over rotated heads; ``mask`` is (padding mask, cos, sin)."""
        c, dim, (m, cos, sin) = self.config, self.config.hidden_size, mask
        q, k, v = (split_heads(linear(x, f"{name}.{n}", dim, dim), c.num_attention_heads) for n in ("query", "key", "value"))
        q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        if c.rotary_value:
            v = rotate_pairs(v, cos, sin)
        return merge_heads(x.builder.tap("attentions", fn.attention(q, k, v, m, causal=c.is_decoder)))

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, name = self.config, "cls.predictions.transform"
        x = activation(c.hidden_act)(linear(states["last_hidden_state"], f"{name}.dense", c.hidden_size,
                                            c.embedding_size))
        return {"logits": self.lm_decoder(layer_norm(x, f"{name}.LayerNorm", c.embedding_size, c.layer_norm_eps))}

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        return {"logits": first_token_classifier(states["last_hidden_state"], "classifier", c.hidden_size,
                                                 c.num_labels, c.hidden_act)}

    def embedding_rules(self) -> list[Rule]:
        return [*same("embeddings.word_embeddings.weight", "embeddings.token_type_embeddings.weight"),
                *norm_rules("embeddings.LayerNorm")]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm":
            return Bert.head_rules(self, task)
        return super().head_rules(task)
