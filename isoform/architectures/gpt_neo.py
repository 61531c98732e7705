"""GPT-Neo (EleutherAI, 2021): GPT-2's pre-LN decoder with separate q/k/v projections (no bias),
unscaled attention scores, and layers alternating between global and local (sliding window of
``window_size`` slots) attention as ``attention_types`` lists them, e.g. ``[[["global", "local"], 12]]``.
Its MLP and projections are ``nn.Linear`` (weights transposed at load), unlike GPT-2's ``Conv1D``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt, field_validator, model_validator

from ..ir import Tensor
from ..layers import linear, linear_rules, merge_heads, split_heads
from ..layers.causal import CausalAttention
from ..weights import Rule
from .base import known_activation, norm_rules, register, same
from .causal import DecoderConfig
from .gpt2 import GPT2

AttentionTypes = list[tuple[list[Literal["global", "local"]], PositiveInt]]


class GPTNeoConfig(DecoderConfig):
    """`transformers.GPTNeoConfig` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 50257
    max_position_embeddings: PositiveInt = 2048
    hidden_size: PositiveInt = 2048
    num_layers: PositiveInt = 24
    num_heads: PositiveInt = 16
    attention_types: AttentionTypes = [(["global", "local"], 12)]
    intermediate_size: PositiveInt | None = None
    window_size: PositiveInt = 256
    activation_function: str = "gelu_new"
    layer_norm_epsilon: PositiveFloat = 1e-5

    @field_validator("activation_function")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @property
    def attention_layers(self) -> list[str]:
        return [kind for kinds, repeat in self.attention_types for _ in range(repeat) for kind in kinds]

    @model_validator(mode="after")
    def _consistent(self) -> GPTNeoConfig:
        self.require_multiple("hidden_size", "num_heads")
        if len(self.attention_layers) != self.num_layers:
            raise ValueError(f"attention_types describe {len(self.attention_layers)} layers, num_layers is {self.num_layers}")
        return self


@register
class GPTNeo(GPT2):
    model_type = "gpt_neo"
    Config = GPTNeoConfig
    tasks = {None: "GPTNeoModel", "causal-lm": "GPTNeoForCausalLM",
             "sequence-classification": "GPTNeoForSequenceClassification"}
    ignore_patterns = (*GPT2.ignore_patterns, r"\.attn\.attention\.(masked_)?bias$")
    config: GPTNeoConfig  # type: ignore[assignment]

    hidden_size = property(lambda self: self.config.hidden_size)
    max_length = property(lambda self: self.config.max_position_embeddings)
    num_layers = property(lambda self: self.config.num_layers)
    num_heads = property(lambda self: self.config.num_heads)
    inner_size = property(lambda self: self.config.intermediate_size or 4 * self.hidden_size)

    def attention(self, x: Tensor, i: int, attend: CausalAttention) -> Tensor:
        c, dim, name = self.config, self.hidden_size, f"h.{i}.attn.attention"
        q, k, v = (split_heads(linear(x, f"{name}.{p}_proj", dim, dim, bias=False), c.num_heads) for p in "qkv")
        window = c.window_size if c.attention_layers[i] == "local" else None
        out = merge_heads(attend(q, k, v, i, window=window, scale=1.0))
        return linear(out, f"{name}.out_proj", dim, dim)

    def backbone_rules(self) -> list[Rule]:
        attn = "h.{i}.attn.attention"
        return [*same("wte.weight", "wpe.weight"), *norm_rules("h.{i}.ln_1", "h.{i}.ln_2", "ln_f"),
                *linear_rules(f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj", bias=False),
                *linear_rules(f"{attn}.out_proj", "h.{i}.mlp.c_fc", "h.{i}.mlp.c_proj")]
