"""Megatron-BERT (Shoeybi et al., 2019): BERT with pre-LayerNorm blocks - ``attention.ln`` before
self-attention and ``ln`` before the feed-forward, residuals around both - a final ``encoder.ln``
and no embedding LayerNorm. Heads, pooler and tensor names otherwise as BERT's; ``pretraining`` is
``MegatronBertForPreTraining`` (the MLM head plus the next-sentence head on the pooler).

Not covered: ``MegatronBertForCausalLM`` (a KV-cached decoder is a `causal.CausalLM`, not this
encoder protocol) and ``MegatronBertForNextSentencePrediction`` (no such task in isoform)."""

from __future__ import annotations

from pydantic import PositiveInt

from ..ir import Tensor
from ..layers import feed_forward, layer_norm, linear, linear_rules, multi_head_attention
from ..weights import Rule
from .base import norm_rules, register, same
from .bert import ENCODER_LINEARS, Bert, BertConfig


class MegatronBertConfig(BertConfig):
    """`transformers.MegatronBertConfig`: BERT's keys with Megatron's defaults."""

    vocab_size: PositiveInt = 29056
    hidden_size: PositiveInt = 1024
    num_hidden_layers: PositiveInt = 24
    num_attention_heads: PositiveInt = 16
    intermediate_size: PositiveInt = 4096


@register
class MegatronBert(Bert):
    model_type = "megatron-bert"
    Config = MegatronBertConfig
    tasks = {None: "MegatronBertModel", "masked-lm": "MegatronBertForMaskedLM",
             "sequence-classification": "MegatronBertForSequenceClassification",
             "token-classification": "MegatronBertForTokenClassification",
             "question-answering": "MegatronBertForQuestionAnswering",
             "multiple-choice": "MegatronBertForMultipleChoice", "pretraining": "MegatronBertForPreTraining"}
    config: MegatronBertConfig

    def embeddings(self, ids: Tensor, token_types: Tensor | None, **inputs: Tensor) -> Tensor:
        return self.embedding_sum(ids, token_types)  # no LayerNorm: each layer normalises its input

    def layer(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        """One pre-LN block: x = x + attn(LN(x)); x = x + ffn(LN(x))."""
        c, dim = self.config, self.config.hidden_size
        h = layer_norm(x, f"{name}.attention.ln", dim, c.layer_norm_eps)
        a = multi_head_attention(h, f"{name}.attention.self", dim, c.num_attention_heads, mask, causal=c.is_decoder)
        x = x + linear(a, f"{name}.attention.output.dense", dim, dim)
        h = layer_norm(x, f"{name}.ln", dim, c.layer_norm_eps)
        return x + feed_forward(h, f"{name}.intermediate.dense", f"{name}.output.dense", dim, c.intermediate_size,
                                c.hidden_act)

    def encoder_norm(self, x: Tensor) -> Tensor:
        return layer_norm(x, "encoder.ln", self.config.hidden_size, self.config.layer_norm_eps)

    def uses_pooler(self, task: str | None) -> bool:
        return task == "pretraining" or super().uses_pooler(task)

    def head_pretraining(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        nsp = linear(states["pooler_output"], "cls.seq_relationship", self.config.hidden_size, 2)
        return {"prediction_logits": self.head_masked_lm(states)["logits"], "seq_relationship_logits": nsp}

    def backbone_rules(self) -> list[Rule]:
        return [*same("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "embeddings.token_type_embeddings.weight"),
                *norm_rules("encoder.layer.{i}.attention.ln", "encoder.layer.{i}.ln", "encoder.ln"),
                *linear_rules(*(f"encoder.layer.{{i}}.{n}" for n in ENCODER_LINEARS))]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "pretraining":
            return [*super().head_rules("masked-lm"), *linear_rules("cls.seq_relationship", prefixed=False)]
        return super().head_rules(task)

    def tied(self, task: str | None) -> dict[str, str]:
        return super().tied("masked-lm" if task == "pretraining" else task)
