"""BART (Lewis et al., 2019) and mBART: Transformer encoder-decoders over a shared token embedding
with learned positions (offset by 2), a LayerNorm on the embeddings, and the LM head tied to the
shared embedding plus ``final_logits_bias``.

`BartFamily` is the whole family as data: Pegasus, Marian, Blenderbot, BlenderbotSmall and
M2M100 (their own modules) subclass it, changing only class attributes: pre- or post-LayerNorm
blocks (``pre_norm``), where the embedding LayerNorm sits (``embedding_norm``), a final LayerNorm
per stack (``final_norm``), and the position embedding (``positions``: learned with an
``position_offset``, Marian/Pegasus sinusoids, fairseq sinusoids over non-padding tokens).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import NonNegativeInt, PositiveInt, field_validator, model_validator

from ..ir import Tensor, fn
from ..layers import (
    activation,
    embedding,
    layer_norm,
    linear,
    linear_rules,
    merge_heads,
    split_heads,
    unembed,
)
from ..layers.causal import CausalAttention
from ..layers.seq2seq import CrossAttention
from ..layers.sinusoidal import fairseq_positions, marian_positions
from ..weights import Rule
from .base import ArchConfig, known_activation, norm_rules, register, same
from .seq2seq import EncoderDecoder

LN_EPS = 1e-5  # nn.LayerNorm's default, which every module of the family uses


class BartConfig(ArchConfig):
    """`transformers.BartConfig` keys isoform reads (shared by the family); all others are kept."""

    vocab_size: PositiveInt = 50265
    d_model: PositiveInt = 1024
    encoder_layers: PositiveInt = 12
    decoder_layers: PositiveInt = 12
    encoder_attention_heads: PositiveInt = 16
    decoder_attention_heads: PositiveInt = 16
    encoder_ffn_dim: PositiveInt = 4096
    decoder_ffn_dim: PositiveInt = 4096
    activation_function: str = "gelu"
    max_position_embeddings: PositiveInt = 1024
    scale_embedding: bool = False
    pad_token_id: NonNegativeInt | None = 1
    eos_token_id: NonNegativeInt | list[int] | None = 2
    decoder_start_token_id: NonNegativeInt | None = 2

    @field_validator("activation_function")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> BartConfig:
        for side in ("encoder", "decoder"):
            self.require_multiple("d_model", f"{side}_attention_heads")
        return self


@register
class BartFamily(EncoderDecoder):
    model_type = "bart"
    Config = BartConfig
    prefix = "model."
    tasks = {None: "BartModel", "seq2seq-lm": "BartForConditionalGeneration",
             "sequence-classification": "BartForSequenceClassification", "question-answering": "BartForQuestionAnswering"}
    ignore_patterns = (*EncoderDecoder.ignore_patterns, r"^(encoder|decoder)\.embed_tokens\.weight$")
    pre_norm: ClassVar[bool] = False
    embedding_norm: ClassVar[Literal["after", "decoder-before", None]] = "after"  # relative to adding positions
    final_norm: ClassVar[bool] = False
    positions: ClassVar[Literal["learned", "marian", "fairseq"]] = "learned"
    position_offset: ClassVar[int] = 2
    logits_bias: ClassVar[bool] = True
    token_embeddings: ClassVar[str] = "shared"  # the token embedding both stacks share (and a tied LM head)
    config: BartConfig

    @property
    def num_decoder_layers(self) -> int:
        return self.config.decoder_layers

    @property
    def cross_shape(self) -> tuple[int, int]:
        heads = self.config.decoder_attention_heads
        return heads, self.d_model // heads

    @property
    def max_length(self) -> int | None:
        return None if self.positions == "fairseq" else self.config.max_position_embeddings

    # -- embeddings -----------------------------------------------------------------------------
    def embed(self, ids: Tensor, stack: str, offset: Tensor | None = None) -> Tensor:
        """Scaled token embeddings plus positions (and the embedding LayerNorm where the family has it)."""
        c, g, d = self.config, ids.builder, self.d_model
        x = embedding(ids, self.token_embeddings, c.vocab_size, d)
        if c.scale_embedding:
            x = x * math.sqrt(d)
        g.tap("inputs_embeds", x)  # transformers' embed_tokens scales (BartScaledWordEmbedding)
        if self.positions == "fairseq":
            real = fn.ne(ids, g.constant(self.pad_id, "i64")).cast("i64")
            count = fn.cumsum(real, axis=1) if offset is None else fn.cumsum(real, axis=1) + offset
            pos = fairseq_positions(count * real + self.pad_id, d, self.pad_id, g.dtype)
        else:
            index = g.add("iota", shape=[ids.shape[1]], axis=0, dtype="i64")
            index = index if offset is None else index + offset
            if self.positions == "marian":
                pos = marian_positions(index, d, g.dtype)
            else:
                rows = c.max_position_embeddings + self.position_offset
                pos = embedding(index + self.position_offset if self.position_offset else index,
                                f"{stack}.embed_positions", rows, d)
        if self.embedding_norm == "decoder-before" and stack == "decoder":
            return layer_norm(x, f"{stack}.layernorm_embedding", d, LN_EPS) + pos
        x = x + pos
        return layer_norm(x, f"{stack}.layernorm_embedding", d, LN_EPS) if self.embedding_norm else x

    # -- blocks ---------------------------------------------------------------------------------
    def attention_qkv(self, x: Tensor, name: str, what: str, heads: int) -> Tensor:
        return split_heads(linear(x, f"{name}.{what}_proj", self.d_model, self.d_model), heads)

    def residual(self, x: Tensor, name: str, body) -> Tensor:
        """``x + body(x)`` with the LayerNorm ``name`` before (pre-norm) or after (post-norm)."""
        if self.pre_norm:
            return x + body(layer_norm(x, name, self.d_model, LN_EPS))
        return layer_norm(x + body(x), name, self.d_model, LN_EPS)

    def ffn(self, x: Tensor, name: str, inner: int) -> Tensor:
        act = activation(self.config.activation_function)
        return linear(act(linear(x, f"{name}.fc1", self.d_model, inner)), f"{name}.fc2", inner, self.d_model)

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.encoder_stack(self.embed(ids, "encoder"), mask)

    def encoder_stack(self, x: Tensor, mask: Tensor) -> Tensor:
        """The encoder layers (and final LayerNorm) over embedded inputs x [batch, seq, d] with padding mask [batch, seq]."""
        c, d = self.config, self.d_model
        keep, heads = fn.ne(mask, mask.builder.constant(0, "i64")), c.encoder_attention_heads
        keep = keep.reshape(mask.shape[0], 1, 1, mask.shape[1])
        for i in range(c.encoder_layers):
            name = f"encoder.layers.{i}"

            def attend(h: Tensor, name: str = f"{name}.self_attn") -> Tensor:
                q, k, v = (self.attention_qkv(h, name, w, heads) for w in "qkv")
                return linear(merge_heads(h.builder.tap("attentions", fn.attention(q, k, v, keep))), f"{name}.out_proj", d, d)

            x = self.residual(x.builder.tap("hidden_states", x), f"{name}.self_attn_layer_norm", attend)
            x = self.residual(x, f"{name}.final_layer_norm", lambda h, name=name: self.ffn(h, name, c.encoder_ffn_dim))
        return x.builder.tap("hidden_states", layer_norm(x, "encoder.layer_norm", d, LN_EPS) if self.final_norm else x)

    def cross_kv(self, states: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        name, heads = f"decoder.layers.{layer}.encoder_attn", self.config.decoder_attention_heads
        return self.attention_qkv(states, name, "k", heads), self.attention_qkv(states, name, "v", heads)

    def decode(self, ids: Tensor, offset: Tensor | None, attend: CausalAttention, cross: CrossAttention) -> Tensor:
        c, d, heads = self.config, self.d_model, self.config.decoder_attention_heads
        x = self.embed(ids, "decoder", offset)
        for i in range(c.decoder_layers):
            name = f"decoder.layers.{i}"

            def self_attn(h: Tensor, i: int = i, name: str = f"{name}.self_attn") -> Tensor:
                q, k, v = (self.attention_qkv(h, name, w, heads) for w in "qkv")
                return linear(merge_heads(attend(q, k, v, i)), f"{name}.out_proj", d, d)

            def cross_attn(h: Tensor, i: int = i, name: str = f"{name}.encoder_attn") -> Tensor:
                return linear(merge_heads(cross(self.attention_qkv(h, name, "q", heads), i)), f"{name}.out_proj", d, d)

            x = self.residual(x.builder.tap("hidden_states", x), f"{name}.self_attn_layer_norm", self_attn)
            x = self.residual(x, f"{name}.encoder_attn_layer_norm", cross_attn)
            x = self.residual(x, f"{name}.final_layer_norm", lambda h, name=name: self.ffn(h, name, c.decoder_ffn_dim))
        return x.builder.tap("hidden_states", layer_norm(x, "decoder.layer_norm", d, LN_EPS) if self.final_norm else x)

    def lm_logits(self, x: Tensor) -> Tensor:
        c, g = self.config, x.builder
        weight = g.param(f"{self.token_embeddings}.weight" if c.tie_word_embeddings else "lm_head.weight",
                         [c.vocab_size, self.d_model])
        bias = g.param("final_logits_bias", [1, c.vocab_size]) if self.logits_bias else None
        return unembed(x, weight, bias)

    # -- weights --------------------------------------------------------------------------------
    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        enc, dec = "encoder.layers.{i}", "decoder.layers.{i}"
        attn = [f"{enc}.self_attn", f"{dec}.self_attn", f"{dec}.encoder_attn"]
        norms = [f"{s}.{n}" for s in (enc, dec) for n in ("self_attn_layer_norm", "final_layer_norm")]
        norms.append(f"{dec}.encoder_attn_layer_norm")
        for stack in ("encoder", "decoder"):
            norms += [f"{stack}.layernorm_embedding"] if self.embedding_norm else []
            norms += [f"{stack}.layer_norm"] if self.final_norm else []
        rules = [*same(f"{self.token_embeddings}.weight"), *norm_rules(*norms),
                 *linear_rules(*(f"{a}.{p}_proj" for a in attn for p in ("q", "k", "v", "out")),
                               *(f"{s}.{fc}" for s in (enc, dec) for fc in ("fc1", "fc2")))]
        if self.positions == "learned":
            rules += same("encoder.embed_positions.weight", "decoder.embed_positions.weight")
        if task == "seq2seq-lm":
            rules += same(*(["final_logits_bias"] if self.logits_bias else []),
                          *([] if self.config.tie_word_embeddings else ["lm_head.weight"]), prefixed=False)
        elif task == "sequence-classification":
            rules += linear_rules("classification_head.dense", "classification_head.out_proj", prefixed=False)
        elif task == "question-answering":
            rules += linear_rules("qa_outputs", prefixed=False)
        return rules


class MBartConfig(BartConfig):
    decoder_start_token_id: NonNegativeInt | None = None


@register
class MBart(BartFamily):
    """mBART: pre-LayerNorm blocks, embedding LayerNorm, and a final LayerNorm in each stack."""

    model_type = "mbart"
    Config = MBartConfig
    tasks = {task: cls.replace("Bart", "MBart") for task, cls in BartFamily.tasks.items()}
    pre_norm = final_norm = True
