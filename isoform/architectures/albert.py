"""ALBERT (Lan et al., 2019): BERT with factorized embeddings (``embedding_size`` projected to
``hidden_size`` by ``encoder.embedding_hidden_mapping_in``) and cross-layer sharing: the
``num_hidden_layers`` steps cycle through ``num_hidden_groups`` groups of ``inner_group_num``
layers, so one parameter serves many layers (the graph declares it once and reuses it)."""

from __future__ import annotations

from pydantic import PositiveInt, model_validator

from ..ir import Tensor, fn
from ..layers import (
    activation,
    attention_mask,
    feed_forward,
    layer_norm,
    linear,
    linear_rules,
    multi_head_attention,
)
from ..weights import Rule
from .base import norm_rules, register
from .bert import Bert, BertConfig


class AlbertConfig(BertConfig):
    """`transformers.AlbertConfig` keys isoform reads; all others are kept."""

    vocab_size: PositiveInt = 30000
    embedding_size: PositiveInt = 128
    hidden_size: PositiveInt = 4096
    num_attention_heads: PositiveInt = 64
    intermediate_size: PositiveInt = 16384
    num_hidden_groups: PositiveInt = 1
    inner_group_num: PositiveInt = 1
    hidden_act: str = "gelu_new"

    @model_validator(mode="after")
    def _groups(self) -> AlbertConfig:
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ValueError(f"num_hidden_groups ({self.num_hidden_groups}) must not exceed "
                             f"num_hidden_layers ({self.num_hidden_layers})")
        return self


GROUP_LAYER = "encoder.albert_layer_groups.{g}.albert_layers.{j}"


@register
class Albert(Bert):
    model_type = "albert"
    Config = AlbertConfig
    prefix = "albert."
    tasks = {None: "AlbertModel", "masked-lm": "AlbertForMaskedLM",
             "sequence-classification": "AlbertForSequenceClassification",
             "token-classification": "AlbertForTokenClassification",
             "question-answering": "AlbertForQuestionAnswering", "multiple-choice": "AlbertForMultipleChoice"}
    head_patterns = (r"^predictions\.", r"^sop_classifier\.", r"^classifier\.", r"^qa_outputs\.", r"^pooler\.")
    pooler_param = "pooler.weight"
    decoder = "predictions.decoder"
    decoder_bias = "predictions.bias"
    config: AlbertConfig

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_size

    def albert_layer(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        c, dim = self.config, self.config.hidden_size
        a = multi_head_attention(x, f"{name}.attention", dim, c.num_attention_heads, mask)
        x = layer_norm(x + linear(a, f"{name}.attention.dense", dim, dim), f"{name}.attention.LayerNorm", dim,
                       c.layer_norm_eps)
        h = feed_forward(x, f"{name}.ffn", f"{name}.ffn_output", dim, c.intermediate_size, c.hidden_act)
        return layer_norm(h + x, f"{name}.full_layer_layer_norm", dim, c.layer_norm_eps)

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        c = self.config
        x = linear(self.embeddings(ids, token_types), "encoder.embedding_hidden_mapping_in", c.embedding_size,
                   c.hidden_size)
        m = attention_mask(mask)
        for i in range(c.num_hidden_layers):
            group = int(i / (c.num_hidden_layers / c.num_hidden_groups))  # transformers' formula, float and all
            for j in range(c.inner_group_num):
                x = self.albert_layer(x.builder.tap("hidden_states", x), GROUP_LAYER.format(g=group, j=j), m)
        out = {"last_hidden_state": x.builder.tap("hidden_states", x)}
        if pooler:
            out["pooler_output"] = fn.tanh(linear(x[:, 0], "pooler", c.hidden_size, c.hidden_size))
        return out

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        x = activation(c.hidden_act)(linear(states["last_hidden_state"], "predictions.dense", c.hidden_size,
                                            c.embedding_size))
        return {"logits": self.lm_decoder(layer_norm(x, "predictions.LayerNorm", c.embedding_size, c.layer_norm_eps))}

    def backbone_rules(self) -> list[Rule]:
        linears = ("attention.query", "attention.key", "attention.value", "attention.dense", "ffn", "ffn_output")
        return [*self.embedding_rules(),
                *norm_rules(f"{GROUP_LAYER}.attention.LayerNorm", f"{GROUP_LAYER}.full_layer_layer_norm"),
                *linear_rules("encoder.embedding_hidden_mapping_in", *(f"{GROUP_LAYER}.{n}" for n in linears))]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm":
            return [*linear_rules("predictions.dense", prefixed=False),
                    *norm_rules("predictions.LayerNorm", prefixed=False), *self.decoder_rules()]
        return super().head_rules(task)
