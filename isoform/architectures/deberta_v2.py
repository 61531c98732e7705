"""DeBERTa-v2 and -v3 (He et al., 2021): DeBERTa's disentangled attention with separate
``query_proj`` / ``key_proj`` / ``value_proj`` (all biased), relative distances log-bucketed into
``position_buckets`` (a table of ``2 x position_buckets`` rows), position projections shared with the
content ones (``share_att_key``) or their own ``pos_key_proj`` / ``pos_query_proj``, the relative
table optionally layer-normed (``norm_rel_ebd="layer_norm"``), and the v2 ConvLayer (``conv_kernel_size
> 0``: a 1-D convolution of the embeddings added to the first layer's output, then LayerNorm).
DeBERTa-v3 checkpoints are this architecture (``model_type`` ``deberta-v2``); the heads are DeBERTa's
plus multiple choice.

Refused with a ConfigError: an even ``conv_kernel_size`` (transformers' "same" padding then shortens
the sequence and fails), ``attention_head_size`` other than ``hidden_size / num_attention_heads``
(the output projection reads ``hidden_size`` features), ``norm_rel_ebd`` entries other than
``none`` / ``layer_norm``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from ..ir import Tensor
from ..layers import activation, layer_norm, linear, linear_rules, split_heads
from ..layers.audio import conv1d
from ..layers.disentangled import row_of_distance
from ..weights import Rule
from .base import known_activation, norm_rules, register, same
from .deberta import Deberta, DebertaConfig, PositionAttention


class DebertaV2Config(DebertaConfig):
    """`transformers.DebertaV2Config` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 128100
    hidden_size: PositiveInt = 1536
    num_hidden_layers: PositiveInt = 24
    num_attention_heads: PositiveInt = 24
    intermediate_size: PositiveInt = 6144
    layer_norm_eps: PositiveFloat = 1e-7
    position_buckets: int = -1
    share_att_key: bool = False
    norm_rel_ebd: str = "none"
    conv_kernel_size: NonNegativeInt = 0
    conv_groups: PositiveInt = 1
    conv_act: str = "tanh"

    @field_validator("conv_act")
    @classmethod
    def _known_conv_activation(cls, v: str) -> str:
        return known_activation(v)

    @field_validator("norm_rel_ebd")
    @classmethod
    def _known_norms(cls, v: str) -> str:
        unknown = set(cls.norms(v)) - {"none", "layer_norm"}
        if unknown:
            raise ValueError(f"unknown entries {sorted(unknown)}; supported: 'none', 'layer_norm'")
        return v

    @staticmethod
    def norms(value: str) -> list[str]:
        return [x.strip() for x in value.lower().split("|")]

    @model_validator(mode="after")
    def _v2_options(self) -> DebertaV2Config:
        if self.conv_kernel_size and self.conv_kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size ({self.conv_kernel_size}) must be odd")
        if self.conv_kernel_size:
            self.require_multiple("hidden_size", "conv_groups")
        head = self.extra("attention_head_size")
        if head is not None and head * self.num_attention_heads != self.hidden_size:
            raise ValueError(f"attention_head_size ({head}) x num_attention_heads ({self.num_attention_heads}) must "
                             f"equal hidden_size ({self.hidden_size})")
        return self

    @property
    def relative_span(self) -> int:
        return self.position_buckets if self.position_buckets > 0 else self.relative_distances

    def distance_table(self) -> np.ndarray:
        span, distances = self.relative_span, self.relative_distances
        return row_of_distance(span, max(span, distances), max(self.position_buckets, 0), distances)

    @property
    def norm_layer(self) -> bool:
        """Whether the relative table is layer-normed (``norm_rel_ebd`` holds ``layer_norm``)."""
        return "layer_norm" in self.norms(self.norm_rel_ebd)


@register
class DebertaV2(Deberta):
    model_type = "deberta-v2"
    Config = DebertaV2Config
    tasks = {None: "DebertaV2Model", "masked-lm": "DebertaV2ForMaskedLM",
             "sequence-classification": "DebertaV2ForSequenceClassification",
             "token-classification": "DebertaV2ForTokenClassification",
             "question-answering": "DebertaV2ForQuestionAnswering", "multiple-choice": "DebertaV2ForMultipleChoice"}
    config: DebertaV2Config

    def after_first_layer(self, h: Tensor, embedded: Tensor, keep: Tensor) -> Tensor:
        return self.conv_layer(embedded, h, keep) if self.config.conv_kernel_size else h

    def relative_rows(self, x: Tensor) -> Tensor:
        c, rows = self.config, super().relative_rows(x)
        return layer_norm(rows, "encoder.LayerNorm", c.hidden_size, c.layer_norm_eps) if c.norm_layer else rows

    def block_attention(self, x: Tensor, name: str, mask: Any) -> Tensor:
        pairs, rows = mask
        dim, heads = self.config.hidden_size, self.config.num_attention_heads
        q, k, v = (split_heads(linear(x, f"{name}.{p}_proj", dim, dim), heads) for p in ("query", "key", "value"))
        return self.disentangled(q, k, v, name, pairs, rows)

    def position_projection(self, rows: Tensor, name: str, kind: PositionAttention) -> Tensor:
        dim, shared = self.config.hidden_size, self.config.share_att_key
        projection = {"c2p": "key_proj" if shared else "pos_key_proj", "p2c": "query_proj" if shared else "pos_query_proj"}
        return linear(rows, f"{name}.{projection[kind]}", dim, dim)

    def conv_layer(self, embedded: Tensor, layer_out: Tensor, keep: Tensor) -> Tensor:
        """``ConvLayer``: LN(first layer's output + act(conv(embeddings) zeroed at padding)), zeroed at padding."""
        c, dim, k = self.config, self.config.hidden_size, self.config.conv_kernel_size
        keep = keep.cast(embedded.dtype).reshape(*keep.shape, 1)
        y = conv1d(embedded.transpose(0, 2, 1), "encoder.conv.conv", dim, dim, k, padding=((k - 1) // 2,) * 2,
                   groups=c.conv_groups).transpose(0, 2, 1)
        y = activation(c.conv_act)(y * keep)
        return layer_norm(layer_out + y, "encoder.conv.LayerNorm", dim, c.layer_norm_eps) * keep

    def attention_rules(self) -> list[Rule]:
        name = "encoder.layer.{i}.attention.self"
        return linear_rules(*(f"{name}.{p}_proj" for p in ("query", "key", "value", "pos_key", "pos_query")))

    def backbone_rules(self) -> list[Rule]:
        return [*super().backbone_rules(), *norm_rules("encoder.LayerNorm", "encoder.conv.LayerNorm"),
                *same("encoder.conv.conv.weight", "encoder.conv.conv.bias")]
