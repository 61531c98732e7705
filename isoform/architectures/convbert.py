"""ConvBERT (Jiang et al., 2020, "ConvBERT: Improving BERT with Span-based Dynamic Convolution"):
ELECTRA's embeddings, projection and heads around a mixed-attention encoder. Each layer splits its
width in two: ``num_attention_heads // head_ratio`` ordinary self-attention heads of half the usual
head size, and as many span-based dynamic convolution heads. A conv head builds a per-token kernel
over a window of ``conv_kernel_size`` tokens: a separable conv (depthwise + pointwise) of the layer
input, times the query, gives the kernel logits (``conv_kernel_layer``, softmax over the window),
which weight the window of ``conv_out_layer`` values (transformers' ``nn.Unfold``, here pad + shifted
slices + one matmul). The two halves are concatenated per token. The feed-forward layers are
grouped linears when ``num_groups`` > 1. The sentence classifier uses ``hidden_act``; multiple
choice uses transformers' sequence summary (default: the last token, no projection, no activation).

The convolutions ignore the attention mask, as in transformers: padding tokens next to real ones
change their outputs, so sequences are never padded to buckets.

Not covered: cross-attention (``add_cross_attention``); even ``conv_kernel_size`` (transformers'
shapes do not line up for it, so such a config cannot run there either)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt, model_validator

from ..ir import Tensor, fn
from ..layers import activation, layer_norm, linear, linear_rules, split_heads
from ..layers.audio import conv1d
from ..layers.grouped import grouped_linear
from ..weights import Rule
from .base import norm_rules, register, same
from .bert import first_token_classifier
from .electra import Electra, ElectraConfig


class ConvBertConfig(ElectraConfig):
    """`transformers.ConvBertConfig` keys isoform reads; all others are kept."""

    embedding_size: PositiveInt = 768
    hidden_size: PositiveInt = 768
    num_attention_heads: PositiveInt = 12
    intermediate_size: PositiveInt = 3072
    pad_token_id: NonNegativeInt | None = 1
    head_ratio: PositiveInt = 2
    conv_kernel_size: PositiveInt = 9
    num_groups: PositiveInt = 1
    summary_type: Literal["first", "last", "mean"] = "last"  # transformers' getattr defaults
    summary_use_proj: bool = False
    summary_activation: str | None = None

    @property
    def attention_heads(self) -> int:
        """Self-attention heads (as many conv heads run beside them)."""
        return max(1, self.num_attention_heads // self.head_ratio)

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.attention_heads // 2

    @model_validator(mode="after")
    def _shapes(self) -> ConvBertConfig:
        if self.conv_kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size ({self.conv_kernel_size}) must be odd: transformers' convolution "
                             "shapes do not match for an even kernel")
        if self.hidden_size % (2 * self.attention_heads):
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of 2 x the attention heads "
                             f"num_attention_heads // head_ratio ({self.attention_heads}): half the width is "
                             "attention heads, half conv heads")
        for key in ("hidden_size", "intermediate_size"):
            if getattr(self, key) % self.num_groups:
                raise ValueError(f"{key} ({getattr(self, key)}) must be a multiple of num_groups ({self.num_groups})")
        return self


def separable_conv1d(x: Tensor, name: str, channels: int, out_channels: int, kernel: int) -> Tensor:
    """transformers' ``SeparableConv1D`` on x [batch, seq, channels]: a depthwise conv (``kernel``,
    same padding, no bias), a pointwise conv to ``out_channels`` and ``<name>.bias`` [out, 1]."""
    y = conv1d(x.transpose(0, 2, 1), f"{name}.depthwise", channels, channels, kernel,
               padding=(kernel // 2, kernel // 2), groups=channels, bias=False)
    y = conv1d(y, f"{name}.pointwise", channels, out_channels, 1, bias=False)
    return (y + x.builder.param(f"{name}.bias", [out_channels, 1])).transpose(0, 2, 1)


def windows(x: Tensor, size: int) -> Tensor:
    """x [batch, seq, c] -> [batch, seq, c, size]: for each token the ``size`` tokens centred on it
    (zeros past the ends), as ``nn.Unfold(kernel_size=[size, 1], padding=[(size - 1) // 2, 0])``."""
    b, s, c = x.shape
    half = (size - 1) // 2
    padded = fn.pad(x, pads=[[0, 0], [half, half], [0, 0]])
    return fn.concat(*(padded[:, k:k + 1 - size or None].reshape(b, s, c, 1) for k in range(size)), axis=-1)


@register
class ConvBert(Electra):
    model_type = "convbert"
    Config = ConvBertConfig
    prefix = "convbert."
    tasks = {None: "ConvBertModel", "masked-lm": "ConvBertForMaskedLM",
             "sequence-classification": "ConvBertForSequenceClassification",
             "token-classification": "ConvBertForTokenClassification",
             "question-answering": "ConvBertForQuestionAnswering", "multiple-choice": "ConvBertForMultipleChoice"}
    head_patterns = (r"^generator_predictions\.", r"^generator_lm_head\.", r"^classifier\.", r"^qa_outputs\.",
                     r"^sequence_summary\.")
    config: ConvBertConfig

    def is_padding_safe(self, task: str | None) -> bool:
        return False

    def block_attention(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        """Self-attention heads and dynamic-conv heads side by side: [batch, seq, hidden]."""
        c, dim = self.config, self.config.hidden_size
        heads, size, width, kernel = c.attention_heads, c.head_size, c.attention_heads * c.head_size, c.conv_kernel_size
        b, s, _ = x.shape
        query = linear(x, f"{name}.query", dim, width)
        q, k, v = (split_heads(t, heads) for t in
                   (query, linear(x, f"{name}.key", dim, width), linear(x, f"{name}.value", dim, width)))
        context = x.builder.tap("attentions", fn.attention(q, k, v, mask))
        context = context.transpose(0, 2, 1, 3)  # [batch, seq, heads, size]
        span = separable_conv1d(x, f"{name}.key_conv_attn_layer", dim, width, kernel) * query
        weights = linear(span, f"{name}.conv_kernel_layer", width, heads * kernel).reshape(b, s, heads, kernel, 1)
        values = windows(linear(x, f"{name}.conv_out_layer", dim, width), kernel).reshape(b, s, heads, size, kernel)
        conv = (values @ fn.softmax(weights, axis=3)).reshape(b, s, heads, size)
        return fn.concat(context, conv, axis=2).reshape(b, s, dim)

    def layer(self, x: Tensor, name: str, mask: Tensor) -> Tensor:
        """BERT's post-LN block around mixed attention and a (grouped) feed-forward."""
        c, dim, groups = self.config, self.config.hidden_size, self.config.num_groups
        a = self.block_attention(x, f"{name}.attention.self", mask)
        x = layer_norm(linear(a, f"{name}.attention.output.dense", dim, dim) + x,
                       f"{name}.attention.output.LayerNorm", dim, c.layer_norm_eps)
        h = activation(c.hidden_act)(grouped_linear(x, f"{name}.intermediate.dense", dim, c.intermediate_size, groups))
        h = grouped_linear(h, f"{name}.output.dense", c.intermediate_size, dim, groups)
        return layer_norm(h + x, f"{name}.output.LayerNorm", dim, c.layer_norm_eps)

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        return {"logits": first_token_classifier(states["last_hidden_state"], "classifier", c.hidden_size,
                                                 c.num_labels, c.hidden_act)}

    def backbone_rules(self) -> list[Rule]:
        layer = "encoder.layer.{i}"
        conv = f"{layer}.attention.self.key_conv_attn_layer"
        ffn = (f"{layer}.intermediate.dense", f"{layer}.output.dense")
        grouped = (same(*(f"{n}.{p}" for n in ffn for p in ("weight", "bias"))) if self.config.num_groups > 1
                   else linear_rules(*ffn))
        attention = [f"{layer}.attention.self.{n}" for n in ("query", "key", "value", "conv_kernel_layer", "conv_out_layer")]
        project = self.config.embedding_size != self.config.hidden_size
        return [*self.embedding_rules(), *(linear_rules("embeddings_project") if project else []),
                *norm_rules(f"{layer}.attention.output.LayerNorm", f"{layer}.output.LayerNorm"),
                *linear_rules(*attention, f"{layer}.attention.output.dense"), *grouped,
                *same(f"{conv}.depthwise.weight", f"{conv}.pointwise.weight", f"{conv}.bias")]
