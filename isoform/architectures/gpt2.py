"""GPT-2 (Radford et al., 2019): a pre-LayerNorm Transformer decoder over token + learned position
embeddings. Also serves DialoGPT and Megatron-GPT2 checkpoints (``model_type`` "gpt2").

The checkpoint's ``Conv1D`` weights are already ``[in, out]``, the graph's linear layout, so the
weight map is the identity; ``c_attn`` stays fused (one matmul, then three slices: one GEMM reads
the weights once per decode step). ``scale_attn_weights``/``scale_attn_by_inverse_layer_idx`` set
the attention scale; ``reorder_and_upcast_attn`` only changes rounding in half precision, where the
``attention`` op computes in float32 anyway.
"""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt, field_validator, model_validator

from ..ir import Tensor
from ..layers import activation, embedding, layer_norm, linear, merge_heads, split_heads
from ..layers.causal import CausalAttention
from ..weights import Rule
from .base import known_activation, norm_rules, register, same
from .causal import CausalLM, DecoderConfig


class GPT2Config(DecoderConfig):
    """`transformers.GPT2Config` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 50257
    n_positions: PositiveInt = 1024
    n_embd: PositiveInt = 768
    n_layer: PositiveInt = 12
    n_head: PositiveInt = 12
    n_inner: PositiveInt | None = None
    activation_function: str = "gelu_new"
    layer_norm_epsilon: PositiveFloat = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False

    @field_validator("activation_function")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> GPT2Config:
        self.require_multiple("n_embd", "n_head")
        if self.add_cross_attention:
            raise ValueError("add_cross_attention=True (GPT-2 as the decoder of an encoder-decoder) is not supported")
        return self


CONV1D = tuple(f"h.{{i}}.{n}.{p}" for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
               for p in ("weight", "bias"))  # already [in, out]: no transpose


@register
class GPT2(CausalLM):
    model_type = "gpt2"
    Config = GPT2Config
    prefix = "transformer."
    tasks = {None: "GPT2Model", "causal-lm": "GPT2LMHeadModel", "sequence-classification": "GPT2ForSequenceClassification"}
    ignore_patterns = (*CausalLM.ignore_patterns, r"\.attn\.(masked_)?bias$")
    head_patterns = (*CausalLM.head_patterns, r"^multiple_choice_head\.")
    word_embeddings = "wte"
    position_embeddings = "wpe"
    norms = ("h.{i}.ln_1", "h.{i}.ln_2", "ln_f")
    config: GPT2Config

    # geometry, by the names of this config (subclasses with other key names override these)
    hidden_size = property(lambda self: self.config.n_embd)
    max_length = property(lambda self: self.config.n_positions)
    num_layers = property(lambda self: self.config.n_layer)
    num_heads = property(lambda self: self.config.n_head)
    inner_size = property(lambda self: self.config.n_inner or 4 * self.hidden_size)
    act = property(lambda self: self.config.activation_function)

    def embed(self, ids: Tensor, positions: Tensor) -> Tensor:
        vocab, dim, wte = self.vocab_size, self.hidden_size, self.word_embeddings
        return (ids.builder.tap("inputs_embeds", embedding(ids, wte, vocab, dim, vocab_parallel=True))
                + embedding(positions, self.position_embeddings, self.max_length, dim))

    def attention_scale(self, layer: int) -> float:
        scale = (self.hidden_size // self.num_heads) ** -0.5 if self.config.scale_attn_weights else 1.0
        return scale / (layer + 1) if self.config.scale_attn_by_inverse_layer_idx else scale

    def attention(self, x: Tensor, i: int, attend: CausalAttention) -> Tensor:
        """Fused ``c_attn`` projection, split into q, k, v by slicing; ``c_proj`` output. Tensor parallel:
        ``c_attn`` is column-split like any q/k/v projection, though a shard of the fused [q|k|v] columns
        is not a set of heads of each of q, k and v (that would take a mesh-dependent column permutation
        at load), so GSPMD reshards the three slices: results are exact, the layout costs communication.
        ``c_proj`` is row-split."""
        dim = self.hidden_size
        qkv = linear(x, f"h.{i}.attn.c_attn", dim, 3 * dim, shard="column")
        q, k, v = (split_heads(qkv[..., j * dim:(j + 1) * dim], self.num_heads) for j in range(3))
        out = merge_heads(attend(q, k, v, i, scale=self.attention_scale(i)))
        return linear(out, f"h.{i}.attn.c_proj", dim, dim, shard="row")

    def mlp(self, x: Tensor, i: int) -> Tensor:
        dim, inner = self.hidden_size, self.inner_size
        h = activation(self.act)(linear(x, f"h.{i}.mlp.c_fc", dim, inner, shard="column"))
        return linear(h, f"h.{i}.mlp.c_proj", inner, dim, shard="row")

    def decoder(self, x: Tensor, positions: Tensor, attend: CausalAttention) -> Tensor:
        """Pre-LN blocks ``x += attn(ln_1(x)); x += mlp(ln_2(x))``, then ``ln_f``."""
        dim, eps = self.hidden_size, self.config.layer_norm_epsilon
        for i in range(self.num_layers):
            x = x.builder.tap("hidden_states", x)
            x = x + self.attention(layer_norm(x, f"h.{i}.ln_1", dim, eps), i, attend)
            x = x + self.mlp(layer_norm(x, f"h.{i}.ln_2", dim, eps), i)
        return x.builder.tap("hidden_states", layer_norm(x, "ln_f", dim, eps))

    def backbone_rules(self) -> list[Rule]:
        embeddings = (f"{self.word_embeddings}.weight", f"{self.position_embeddings}.weight")
        return [*same(*embeddings, *CONV1D), *norm_rules(*self.norms)]
