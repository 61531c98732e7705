"""MPNet (Song et al., 2020): RoBERTa-style embeddings (fairseq positions, padding index fixed at 1,
no token types) and heads, with a T5-style bucketed relative position bias shared by all layers
(``encoder.relative_attention_bias``) added to the attention scores."""

from __future__ import annotations

import math

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from ..ir import Tensor, fn
from ..layers import attention_mask, feed_forward, layer_norm, linear, linear_rules, multi_head_attention
from ..weights import Rule
from .base import norm_rules, register, same
from .roberta import Roberta, RobertaConfig, _classes

PADDING_IDX = 1  # transformers' MPNetEmbeddings hard-codes it, whatever pad_token_id says
MAX_DISTANCE = 128


class MPNetConfig(RobertaConfig):
    """`transformers.MPNetConfig` keys isoform reads; all others are kept."""

    vocab_size: PositiveInt = 30527
    max_position_embeddings: PositiveInt = 512
    layer_norm_eps: PositiveFloat = 1e-12
    relative_attention_num_buckets: PositiveInt = 32
    type_vocab_size: NonNegativeInt = 0  # MPNet has no token types

    @field_validator("relative_attention_num_buckets")
    @classmethod
    def _thirty_two(cls, v: int) -> int:
        if v != 32:  # transformers always buckets for 32 (compute_position_bias's default), then indexes the table
            raise ValueError(f"must be 32: transformers computes MPNet position buckets for 32, got {v}")
        return v


def relative_buckets(max_positions: int, num_buckets: int) -> np.ndarray:
    """Bucket of every relative position ``key - query`` in ``[-(P-1), P-1]`` (index ``r + P - 1``),
    computed in float32 like transformers' ``relative_position_bucket`` so truncation agrees."""
    n = -np.arange(-(max_positions - 1), max_positions, dtype=np.int64)
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    scaled = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(exact)) / np.float32(math.log(MAX_DISTANCE / exact))
    large = np.minimum(exact + (scaled * np.float32(half - exact)).astype(np.int64), half - 1)
    return ret + np.where(n < exact, n, large)


@register
class MPNet(Roberta):
    model_type = "mpnet"
    Config = MPNetConfig
    prefix = "mpnet."
    tasks = _classes("MPNet")
    config: MPNetConfig

    @property
    def uses_token_types(self) -> bool:
        return False

    @property
    def max_length(self) -> int:
        return self.config.max_position_embeddings - PADDING_IDX - 1

    @property
    def pad_id(self) -> int:
        return PADDING_IDX

    def positions(self, ids: Tensor) -> Tensor:
        real = fn.ne(ids, ids.builder.constant(PADDING_IDX, ids.dtype)).cast(ids.dtype)
        return fn.cumsum(real, axis=1) * real + PADDING_IDX

    def position_bias(self, mask: Tensor, seq: str | int) -> Tensor:
        """[batch, heads, seq, seq]: the relative position bias plus the padding mask (lowest float)."""
        c, g = self.config, mask.builder
        table = relative_buckets(c.max_position_embeddings, c.relative_attention_num_buckets)
        rel = g.add("iota", shape=[seq, seq], axis=1) - g.add("iota", shape=[seq, seq], axis=0)
        buckets = fn.gather(g.constant(table.tolist(), "i64"), rel + (c.max_position_embeddings - 1), axis=0)
        weight = g.param("encoder.relative_attention_bias.weight", [c.relative_attention_num_buckets, c.num_attention_heads])
        bias = fn.gather(weight, buckets, axis=0).transpose(2, 0, 1).reshape(1, c.num_attention_heads, seq, seq)
        low = g.constant(float(np.finfo(g.dtype.numpy).min), g.dtype)
        return bias + fn.where(attention_mask(mask), g.constant(0.0, g.dtype), low)

    def layer(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        c, dim = self.config, self.config.hidden_size
        a = multi_head_attention(x, f"{name}.attention.attn", dim, c.num_attention_heads, mask, names=("q", "k", "v"))
        x = layer_norm(linear(a, f"{name}.attention.attn.o", dim, dim) + x, f"{name}.attention.LayerNorm", dim,
                       c.layer_norm_eps)
        h = feed_forward(x, f"{name}.intermediate.dense", f"{name}.output.dense", dim, c.intermediate_size, c.hidden_act)
        return layer_norm(h + x, f"{name}.output.LayerNorm", dim, c.layer_norm_eps)

    def encoder(self, x: Tensor, mask: Tensor) -> Tensor:
        bias = self.position_bias(mask, x.shape[1])
        for i in range(self.config.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), f"encoder.layer.{i}", bias)
        return x.builder.tap("hidden_states", x)

    def backbone_rules(self) -> list[Rule]:
        layer = "encoder.layer.{i}"
        return [*same("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                      "encoder.relative_attention_bias.weight"),
                *norm_rules("embeddings.LayerNorm", f"{layer}.attention.LayerNorm", f"{layer}.output.LayerNorm"),
                *linear_rules(*(f"{layer}.attention.attn.{n}" for n in "qkvo"), f"{layer}.intermediate.dense",
                              f"{layer}.output.dense")]
