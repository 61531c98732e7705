"""GPT (Radford et al., 2018; ``model_type`` "openai-gpt"): GPT-2's ancestor, a post-LayerNorm
decoder (``x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))``) with no final norm, over token + learned
position embeddings. Weights are GPT-2's ``Conv1D`` layout under other embedding names; ``afn``
picks the activation, where "gelu" means the tanh approximation (transformers' ``gelu_new``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt, model_validator

from ..ir import Tensor
from ..layers import layer_norm
from ..layers.causal import CausalAttention
from .base import register
from .causal import DecoderConfig
from .gpt2 import GPT2

AFN = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}  # transformers' openai ACT_FNS


class OpenAIGPTConfig(DecoderConfig):
    """`transformers.OpenAIGPTConfig` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 40478
    n_positions: PositiveInt = 512
    n_embd: PositiveInt = 768
    n_layer: PositiveInt = 12
    n_head: PositiveInt = 12
    afn: Literal["gelu", "relu", "silu", "swish"] = "gelu"
    layer_norm_epsilon: PositiveFloat = 1e-5

    @model_validator(mode="after")
    def _consistent(self) -> OpenAIGPTConfig:
        self.require_multiple("n_embd", "n_head")
        return self


@register
class OpenAIGPT(GPT2):
    model_type = "openai-gpt"
    Config = OpenAIGPTConfig
    tasks = {None: "OpenAIGPTModel", "causal-lm": "OpenAIGPTLMHeadModel",
             "sequence-classification": "OpenAIGPTForSequenceClassification"}
    word_embeddings = "tokens_embed"
    position_embeddings = "positions_embed"
    norms = ("h.{i}.ln_1", "h.{i}.ln_2")
    config: OpenAIGPTConfig  # type: ignore[assignment]

    inner_size = property(lambda self: 4 * self.hidden_size)
    act = property(lambda self: AFN[self.config.afn])

    def attention_scale(self, layer: int) -> float:
        return (self.hidden_size // self.num_heads) ** -0.5

    def decoder(self, x: Tensor, positions: Tensor, attend: CausalAttention) -> Tensor:
        dim, eps = self.hidden_size, self.config.layer_norm_epsilon
        for i in range(self.num_layers):
            x = x.builder.tap("hidden_states", x)
            x = layer_norm(x + self.attention(x, i, attend), f"h.{i}.ln_1", dim, eps)
            x = layer_norm(x + self.mlp(x, i), f"h.{i}.ln_2", dim, eps)
        return x.builder.tap("hidden_states", x)
