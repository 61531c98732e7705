"""Llama (Touvron et al., 2023) and its close relatives Mistral and Qwen2: a pre-RMSNorm decoder with
rotary position embeddings, grouped-query attention and a gated (SwiGLU) MLP.

What differs between the three, as transformers v5 has it:
* Llama: ``attention_bias`` (q/k/v/o) and ``mlp_bias`` keys; no sliding window.
* Mistral: no biases; ``sliding_window`` (default 4096) on every layer when set.
* Qwen2: q/k/v biases (o_proj none); the window ``sliding_window`` only when ``use_sliding_window``,
  on the layers ``layer_types`` marks ``sliding_attention`` (by default those >= ``max_window_layers``).
Windows count cache slots as transformers' masks do: key j is visible from query i iff i - window < j <= i.

RoPE comes from ``rope_parameters`` (transformers v5) or the older ``rope_scaling`` + ``rope_theta``
keys; every ``rope_type`` of the installed transformers is supported (`isoform.layers.rotary`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from ..ir import Tensor
from ..layers import activation, embedding, linear, linear_rules, merge_heads, split_heads
from ..layers.causal import CausalAttention
from ..layers.norm import rms_norm
from ..layers.rotary import Rope, apply_rotary, rotary_embedding
from ..weights import Rule
from .base import known_activation, register, same
from .causal import CausalLM, DecoderConfig


class LlamaConfig(DecoderConfig):
    """`transformers.LlamaConfig` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 32000
    hidden_size: PositiveInt = 4096
    intermediate_size: PositiveInt = 11008
    num_hidden_layers: PositiveInt = 32
    num_attention_heads: PositiveInt = 32
    num_key_value_heads: PositiveInt | None = None
    head_dim: PositiveInt | None = None
    hidden_act: str = "silu"
    max_position_embeddings: PositiveInt = 2048
    rms_norm_eps: PositiveFloat = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    rope_theta: PositiveFloat | None = None
    rope_parameters: dict[str, Any] | None = None
    rope_scaling: dict[str, Any] | None = None

    @field_validator("hidden_act")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> LlamaConfig:
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                             f"num_key_value_heads ({self.kv_heads})")
        _ = self.rope  # validates the rope keys (ConfigError naming them)
        return self

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rope(self) -> Rope:
        """RoPE parameters normalized as transformers' ``standardize_rope_params`` does."""
        params = dict(self.rope_parameters or self.rope_scaling or {})
        params.setdefault("rope_type", params.get("type", "default"))
        params.setdefault("rope_theta", self.rope_theta or 10000.0)
        if self.extra("partial_rotary_factor") is not None:
            params.setdefault("partial_rotary_factor", self.extra("partial_rotary_factor"))
        if params["rope_type"] in ("llama3", "yarn", "longrope"):
            top = self.extra("original_max_position_embeddings")
            if top is not None:
                params["original_max_position_embeddings"] = top
            params.setdefault("original_max_position_embeddings", self.max_position_embeddings)
        return Rope(params, self.dim_per_head, self.max_position_embeddings)

    def window(self, layer: int) -> int | None:
        """The sliding window of ``layer`` (None: full causal attention)."""
        return None


class MistralConfig(LlamaConfig):
    sliding_window: PositiveInt | None = 4096

    def window(self, layer: int) -> int | None:
        return self.sliding_window


class Qwen2Config(LlamaConfig):
    use_sliding_window: bool = False
    sliding_window: PositiveInt | None = 4096
    max_window_layers: NonNegativeInt = 28
    layer_types: list[Literal["full_attention", "sliding_attention"]] | None = None

    @model_validator(mode="after")
    def _layer_types(self) -> Qwen2Config:
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_hidden_layers} layers")
        return self

    def window(self, layer: int) -> int | None:
        window = self.sliding_window if self.use_sliding_window else None
        if self.layer_types is not None:
            return window if self.layer_types[layer] == "sliding_attention" else None
        return window if layer >= self.max_window_layers else None


@register
class Llama(CausalLM):
    model_type = "llama"
    Config = LlamaConfig
    prefix = "model."
    tasks = {None: "LlamaModel", "causal-lm": "LlamaForCausalLM", "sequence-classification": "LlamaForSequenceClassification"}
    ignore_patterns = (*CausalLM.ignore_patterns, r"rotary_emb\.inv_freq$")
    word_embeddings = "embed_tokens"
    config: LlamaConfig

    @property
    def max_length(self) -> int:
        return self.config.rope.max_length

    def is_padding_safe(self, task: str | None) -> bool:
        """Not with dynamic NTK or longrope: appended positions change every position's frequencies."""
        return super().is_padding_safe(task) and self.config.rope.type not in ("dynamic", "longrope")

    @property
    def biases(self) -> tuple[bool, bool, bool]:
        """Whether q/k/v, o_proj and the MLP have biases."""
        return self.config.attention_bias, self.config.attention_bias, self.config.mlp_bias

    def embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        x = embedding(ids, "embed_tokens", self.config.vocab_size, self.config.hidden_size, vocab_parallel=True)
        return ids.builder.tap("inputs_embeds", x)

    def attention(self, x: Tensor, i: int, rotary: tuple[Tensor, Tensor], attend: CausalAttention) -> Tensor:
        c, name, qkv_bias = self.config, f"layers.{i}.self_attn", self.biases[0]
        d, heads, kv = c.dim_per_head, c.num_attention_heads, c.kv_heads
        q = split_heads(linear(x, f"{name}.q_proj", c.hidden_size, heads * d, bias=qkv_bias, shard="column"), heads)
        k = split_heads(linear(x, f"{name}.k_proj", c.hidden_size, kv * d, bias=qkv_bias, shard="column"), kv)
        v = split_heads(linear(x, f"{name}.v_proj", c.hidden_size, kv * d, bias=qkv_bias, shard="column"), kv)
        q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        out = merge_heads(attend(q, k, v, i, window=c.window(i)))
        return linear(out, f"{name}.o_proj", heads * d, c.hidden_size, bias=self.biases[1], shard="row")

    def mlp(self, x: Tensor, i: int) -> Tensor:
        c, name, bias = self.config, f"layers.{i}.mlp", self.biases[2]
        gate = linear(x, f"{name}.gate_proj", c.hidden_size, c.intermediate_size, bias=bias, shard="column")
        up = linear(x, f"{name}.up_proj", c.hidden_size, c.intermediate_size, bias=bias, shard="column")
        return linear(activation(c.hidden_act)(gate) * up, f"{name}.down_proj", c.intermediate_size, c.hidden_size,
                      bias=bias, shard="row")

    def decoder(self, x: Tensor, positions: Tensor, attend: CausalAttention) -> Tensor:
        c = self.config
        rotary = rotary_embedding(positions, c.rope, x.dtype)
        for i in range(c.num_hidden_layers):
            x = x.builder.tap("hidden_states", x)
            x = x + self.attention(rms_norm(x, f"layers.{i}.input_layernorm", c.hidden_size, c.rms_norm_eps), i,
                                   rotary, attend)
            x = x + self.mlp(rms_norm(x, f"layers.{i}.post_attention_layernorm", c.hidden_size, c.rms_norm_eps), i)
        return x.builder.tap("hidden_states", rms_norm(x, "norm", c.hidden_size, c.rms_norm_eps))

    def backbone_rules(self) -> list[Rule]:
        qkv_bias, o_bias, mlp_bias = self.biases
        attn, mlp = "layers.{i}.self_attn", "layers.{i}.mlp"
        return [*same("embed_tokens.weight", "norm.weight", "layers.{i}.input_layernorm.weight",
                      "layers.{i}.post_attention_layernorm.weight"),
                *linear_rules(f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj", bias=qkv_bias),
                *linear_rules(f"{attn}.o_proj", bias=o_bias),
                *linear_rules(f"{mlp}.gate_proj", f"{mlp}.up_proj", f"{mlp}.down_proj", bias=mlp_bias)]


@register
class Mistral(Llama):
    model_type = "mistral"
    Config = MistralConfig
    tasks = {None: "MistralModel", "causal-lm": "MistralForCausalLM",
             "sequence-classification": "MistralForSequenceClassification"}

    @property
    def biases(self) -> tuple[bool, bool, bool]:
        return False, False, False


@register
class Qwen2(Llama):
    model_type = "qwen2"
    Config = Qwen2Config
    tasks = {None: "Qwen2Model", "causal-lm": "Qwen2ForCausalLM", "sequence-classification": "Qwen2ForSequenceClassification"}

    @property
    def biases(self) -> tuple[bool, bool, bool]:
        return True, False, False
