"""SqueezeBERT (Iandola et al., 2020): BERT with its position-wise fully-connected layers replaced by
grouped convolutions, as in efficient vision networks. Each block runs channels-first
[batch, channels, seq] states through kernel-1 ``Conv1d`` layers: query, key and value with
``q_groups``, ``k_groups``, ``v_groups``, the post-attention projection with
``post_attention_groups`` and the FFN with ``intermediate_groups`` / ``output_groups``, and
normalizes over channels; otherwise it is BERT's post-LayerNorm block, embeddings, pooler and heads.

A kernel-1 convolution is a per-position linear map, so isoform keeps BERT's channels-last layout
and computes each conv as a grouped linear layer (`isoform.layers.grouped`: one batched matmul over
the groups); the channel LayerNorm is then the usual last-axis one. The block LayerNorms use eps
1e-12 whatever ``layer_norm_eps`` says (transformers builds them with their default); the embedding
and MLM-transform ones use ``layer_norm_eps``. ``embedding_size`` must equal ``hidden_size``, as in
transformers. SqueezeBERT has no pretraining head class in transformers, so no ``pretraining`` task."""

from __future__ import annotations

from pydantic import PositiveInt, model_validator

from ..ir import Tensor, fn
from ..layers import activation, attention_mask, layer_norm, merge_heads, split_heads
from ..layers.grouped import conv1x1_rules, grouped_linear
from ..weights import Rule
from .base import norm_rules, register
from .bert import Bert, BertConfig

BLOCK_NORM_EPS = 1e-12  # SqueezeBertLayerNorm's default, used by every block norm

GROUPS = ("q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups", "output_groups")


class SqueezeBertConfig(BertConfig):
    """`transformers.SqueezeBertConfig` keys isoform reads; all others are kept."""

    embedding_size: PositiveInt = 768
    q_groups: PositiveInt = 4
    k_groups: PositiveInt = 4
    v_groups: PositiveInt = 4
    post_attention_groups: PositiveInt = 1
    intermediate_groups: PositiveInt = 4
    output_groups: PositiveInt = 4

    @model_validator(mode="after")
    def _channels(self) -> SqueezeBertConfig:
        if self.embedding_size != self.hidden_size:
            raise ValueError(f"embedding_size ({self.embedding_size}) must equal hidden_size ({self.hidden_size}), "
                             "as transformers' SqueezeBertEncoder asserts")
        for key in GROUPS:  # Conv1d needs both channel counts divisible by groups
            sizes = ("intermediate_size",) if key in ("intermediate_groups", "output_groups") else ()
            for size in ("hidden_size", *sizes):
                self.require_multiple(size, key)
        return self


def layer_name(i: int | str) -> str:
    return f"encoder.layers.{i}"


@register
class SqueezeBert(Bert):
    model_type = "squeezebert"
    Config = SqueezeBertConfig
    prefix = "transformer."
    tasks = {None: "SqueezeBertModel", "masked-lm": "SqueezeBertForMaskedLM",
             "sequence-classification": "SqueezeBertForSequenceClassification",
             "token-classification": "SqueezeBertForTokenClassification",
             "question-answering": "SqueezeBertForQuestionAnswering",
             "multiple-choice": "SqueezeBertForMultipleChoice"}
    config: SqueezeBertConfig

    def layer(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        """One post-LN block of grouped projections: x = LN(x + post(attn(x))); x = LN(x + out(act(inter(x))))."""
        c, dim, inner = self.config, self.config.hidden_size, self.config.intermediate_size
        q, k, v = (split_heads(grouped_linear(x, f"{name}.attention.{n}", dim, dim, groups), c.num_attention_heads)
                   for n, groups in (("query", c.q_groups), ("key", c.k_groups), ("value", c.v_groups)))
        a = merge_heads(fn.attention(q, k, v, mask))
        x = layer_norm(grouped_linear(a, f"{name}.post_attention.conv1d", dim, dim, c.post_attention_groups) + x,
                       f"{name}.post_attention.layernorm", dim, BLOCK_NORM_EPS)
        h = activation(c.hidden_act)(grouped_linear(x, f"{name}.intermediate.conv1d", dim, inner,
                                                    c.intermediate_groups))
        return layer_norm(grouped_linear(h, f"{name}.output.conv1d", inner, dim, c.output_groups) + x,
                          f"{name}.output.layernorm", dim, BLOCK_NORM_EPS)

    def encoder(self, x: Tensor, mask: Tensor) -> Tensor:
        m = attention_mask(mask)
        for i in range(self.config.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), layer_name(i), m)
        return x.builder.tap("hidden_states", x)  # (no attention taps: transformers returns the masked scores)

    def head(self, task: str, states: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        if "pooler_output" not in states:  # every SqueezeBERT class has the pooler: kept so save() writes it back
            g, dim = states["last_hidden_state"].builder, self.config.hidden_size
            g.param("pooler.dense.weight", [dim, dim])
            g.param("pooler.dense.bias", [dim])
        return super().head(task, states, mask)

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        return super().rules(task, pooler=pooler or task is not None)

    def backbone_rules(self) -> list[Rule]:
        c, dim, inner, name = self.config, self.config.hidden_size, self.config.intermediate_size, layer_name("{i}")
        convs = [("attention.query", dim, dim, c.q_groups), ("attention.key", dim, dim, c.k_groups),
                 ("attention.value", dim, dim, c.v_groups), ("post_attention.conv1d", dim, dim, c.post_attention_groups),
                 ("intermediate.conv1d", dim, inner, c.intermediate_groups),
                 ("output.conv1d", inner, dim, c.output_groups)]
        return [*self.embedding_rules(), *norm_rules(f"{name}.post_attention.layernorm", f"{name}.output.layernorm"),
                *(r for n, i, o, groups in convs for r in conv1x1_rules(f"{name}.{n}", i, o, groups))]
