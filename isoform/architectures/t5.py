"""T5 (Raffel et al., 2020) and mT5: a pre-RMSNorm encoder-decoder without biases, whose only
position signal is a bucketed relative position bias added to the (unscaled) attention scores of
every layer, computed by the first layer of each stack (`isoform.layers.relative_position`).

``feed_forward_proj`` is ``"<act>"`` (``wo(act(wi(x)))``) or ``"gated-<act>"``
(``wo(act(wi_0(x)) * wi_1(x))``; ``gated-gelu`` means ``gelu_new``). ``d_kv`` may differ from
``d_model / num_heads``. The LM head is the shared embedding unless the checkpoint has its own
``lm_head.weight``; decoder outputs are scaled by ``d_model**-0.5`` first when transformers does
(``scale_decoder_outputs``, saved by transformers v5, else ``tie_word_embeddings`` not false).
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from ..ir import Tensor, fn
from ..layers import activation, embedding, linear, linear_rules, merge_heads, split_heads, unembed
from ..layers.causal import CausalAttention
from ..layers.relative_position import relative_position_bias
from ..layers.seq2seq import CrossAttention
from ..weights import Rule, WeightMap
from .base import ArchConfig, register, same
from .seq2seq import EncoderDecoder


class T5Config(ArchConfig):
    """`transformers.T5Config` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 32128
    d_model: PositiveInt = 512
    d_kv: PositiveInt = 64
    d_ff: PositiveInt = 2048
    num_layers: PositiveInt = 6
    num_decoder_layers: PositiveInt | None = None
    num_heads: PositiveInt = 8
    relative_attention_num_buckets: PositiveInt = 32
    relative_attention_max_distance: PositiveInt = 128
    layer_norm_epsilon: PositiveFloat = 1e-6
    feed_forward_proj: str = "relu"
    pad_token_id: NonNegativeInt | None = 0
    eos_token_id: NonNegativeInt | list[int] | None = 1
    decoder_start_token_id: NonNegativeInt | None = None

    @field_validator("feed_forward_proj")
    @classmethod
    def _valid_proj(cls, v: str) -> str:
        parts = v.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(f"must be '<activation>' or 'gated-<activation>', got {v!r}")
        act = "gelu_new" if v == "gated-gelu" else parts[-1]
        activation(act)  # ConfigError naming the supported ones
        return v

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def act(self) -> str:
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else self.feed_forward_proj.split("-")[-1]

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers or self.num_layers

    @property
    def scale_outputs(self) -> bool:
        scale = self.extra("scale_decoder_outputs")
        return bool(scale) if scale is not None else self.tie_word_embeddings is not False


@register
class T5(EncoderDecoder):
    model_type = "t5"
    Config = T5Config
    prefix = "transformer."  # T5ForSequenceClassification only; the others have no prefix
    tasks = {None: "T5Model", "seq2seq-lm": "T5ForConditionalGeneration",
             "sequence-classification": "T5ForSequenceClassification", "question-answering": "T5ForQuestionAnswering"}
    ignore_patterns = (*EncoderDecoder.ignore_patterns, r"^(encoder|decoder)\.embed_tokens\.weight$",
                       r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$")
    config: T5Config

    @property
    def num_decoder_layers(self) -> int:
        return self.config.decoder_layers

    @property
    def cross_shape(self) -> tuple[int, int]:
        return self.config.num_heads, self.config.d_kv

    @property
    def pad_id(self) -> int:
        return self.config.pad_token_id or 0

    # -- layers ---------------------------------------------------------------------------------
    def norm(self, x: Tensor, name: str) -> Tensor:
        """T5LayerNorm: RMS norm without mean or bias, computed in float32."""
        w = x.builder.param(f"{name}.weight", [self.d_model])
        return fn.rms_norm(x.cast("f32"), eps=self.config.layer_norm_epsilon).cast(x.dtype) * w

    def project(self, x: Tensor, name: str, what: str) -> Tensor:
        c = self.config
        return split_heads(linear(x, f"{name}.{what}", c.d_model, c.num_heads * c.d_kv, bias=False), c.num_heads)

    def out(self, a: Tensor, name: str) -> Tensor:
        c = self.config
        return linear(merge_heads(a), f"{name}.o", c.num_heads * c.d_kv, c.d_model, bias=False)

    def feed_forward(self, x: Tensor, name: str) -> Tensor:
        c, h = self.config, self.norm(x, f"{name}.layer_norm")
        ff = f"{name}.DenseReluDense"
        if c.gated:
            up = activation(c.act)(linear(h, f"{ff}.wi_0", c.d_model, c.d_ff, bias=False)) * linear(h, f"{ff}.wi_1", c.d_model, c.d_ff, bias=False)
        else:
            up = activation(c.act)(linear(h, f"{ff}.wi", c.d_model, c.d_ff, bias=False))
        return x + linear(up, f"{ff}.wo", c.d_ff, c.d_model, bias=False)

    def bias(self, stack: str, queries: Tensor, keys: Tensor) -> Tensor:
        c = self.config
        return relative_position_bias(queries, keys, f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias",
                                      c.num_heads, c.relative_attention_num_buckets, c.relative_attention_max_distance,
                                      bidirectional=stack == "encoder")

    # -- stacks ---------------------------------------------------------------------------------
    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        c, g = self.config, ids.builder
        x = g.tap("inputs_embeds", embedding(ids, "shared", c.vocab_size, c.d_model))
        pos = g.add("iota", shape=[ids.shape[1]], axis=0, dtype="i64")
        low = g.constant(g.dtype.lowest, g.dtype)
        keep = fn.ne(mask, g.constant(0, mask.dtype)).reshape(mask.shape[0], 1, 1, mask.shape[1])
        scores = fn.where(keep, self.bias("encoder", pos, pos), low)
        for i in range(c.num_layers):
            name = f"encoder.block.{i}.layer"
            attn = f"{name}.0.SelfAttention"
            h = self.norm(g.tap("hidden_states", x), f"{name}.0.layer_norm")
            q, k, v = (self.project(h, attn, n) for n in "qkv")
            x = x + self.out(g.tap("attentions", fn.attention(q, k, v, scores, scale=1.0)), attn)
            x = self.feed_forward(x, f"{name}.1")
        return g.tap("hidden_states", self.norm(x, "encoder.final_layer_norm"))

    def cross_kv(self, states: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        name = f"decoder.block.{layer}.layer.1.EncDecAttention"
        return self.project(states, name, "k"), self.project(states, name, "v")

    def decode(self, ids: Tensor, offset: Tensor | None, attend: CausalAttention, cross: CrossAttention) -> Tensor:
        c, g = self.config, ids.builder
        x = g.tap("inputs_embeds", embedding(ids, "shared", c.vocab_size, c.d_model))
        queries = g.add("iota", shape=[ids.shape[1]], axis=0, dtype="i64")
        keys = g.add("iota", shape=[attend.key_length], axis=0, dtype="i64")
        bias = self.bias("decoder", queries if offset is None else queries + offset, keys)
        for i in range(c.decoder_layers):
            name = f"decoder.block.{i}.layer"
            attn, enc = f"{name}.0.SelfAttention", f"{name}.1.EncDecAttention"
            h = self.norm(g.tap("hidden_states", x), f"{name}.0.layer_norm")
            q, k, v = (self.project(h, attn, n) for n in "qkv")
            x = x + self.out(attend(q, k, v, i, bias=bias, scale=1.0), attn)
            h = self.norm(x, f"{name}.1.layer_norm")
            x = x + self.out(cross(self.project(h, enc, "q"), i, scale=1.0), enc)
            x = self.feed_forward(x, f"{name}.2")
        return g.tap("hidden_states", self.norm(x, "decoder.final_layer_norm"))

    own_lm_head = False  # T5ForConditionalGeneration checkpoints may carry an untied lm_head

    def resolve(self, keys: Collection[str]) -> None:
        super().resolve(keys)
        self.own_lm_head = "lm_head.weight" in keys

    def lm_logits(self, x: Tensor) -> Tensor:
        c, g = self.config, x.builder
        if c.scale_outputs:
            x = x * (c.d_model ** -0.5)
        name = "lm_head.weight" if self.own_lm_head else "shared.weight"
        return unembed(x, g.param(name, [c.vocab_size, c.d_model]))

    # -- weights --------------------------------------------------------------------------------
    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        c = self.config
        ff = ["wi_0", "wi_1", "wo"] if c.gated else ["wi", "wo"]
        enc, dec = "encoder.block.{i}.layer", "decoder.block.{i}.layer"
        rules = [*same("shared.weight", "encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight",
                       "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                       "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                       *(f"{s}.{j}.layer_norm.weight" for s in (enc, dec) for j in range(3) if (s, j) != (enc, 2))),
                 *linear_rules(*(f"{s}.0.SelfAttention.{n}" for s in (enc, dec) for n in "qkvo"),
                               *(f"{dec}.1.EncDecAttention.{n}" for n in "qkvo"),
                               *(f"{enc}.1.DenseReluDense.{n}" for n in ff), *(f"{dec}.2.DenseReluDense.{n}" for n in ff),
                               bias=False)]
        if task == "seq2seq-lm":
            rules += same("lm_head.weight", prefixed=False)
        elif task == "sequence-classification":
            rules += linear_rules("classification_head.dense", "classification_head.out_proj", prefixed=False)
        elif task == "question-answering":
            rules += linear_rules("qa_outputs", prefixed=False)
        return rules

    def weight_map(self, task: str | None) -> WeightMap:
        base = super().weight_map(task)
        return base.extend(save_prefix=task == "sequence-classification")


class MT5Config(T5Config):
    """mT5: T5 v1.1 defaults; decoder outputs are never rescaled (transformers' MT5 has no rescale)."""

    vocab_size: PositiveInt = 250112
    feed_forward_proj: str = "gated-gelu"
    decoder_start_token_id: NonNegativeInt | None = 0

    @property
    def scale_outputs(self) -> bool:
        return False


@register
class MT5(T5):
    model_type = "mt5"
    Config = MT5Config
    tasks = {task: cls.replace("T5", "MT5") for task, cls in T5.tasks.items()}
