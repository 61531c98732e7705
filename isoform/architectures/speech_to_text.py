"""Speech2Text (Wang et al., 2020, fairseq S2T): log-mel filterbank frames subsampled by a stack of
stride-2 Conv1d + GLU layers, then the M2M100 encoder-decoder (pre-LayerNorm blocks, a final
LayerNorm per stack, scaled embeddings, fairseq sinusoidal positions counted over real frames and
tokens). The encoder's padding mask is the input mask subsampled with the conv length formula
(``ceil(length / 2)`` per layer); cross-attention reads it, so the ``"encoder"`` graph of generation
outputs it as ``encoder_attention_mask``.
"""

from __future__ import annotations

import math

from pydantic import PositiveInt, model_validator

from ..ir import Tensor, fn
from ..layers.audio import conv1d, glu
from ..layers.sinusoidal import fairseq_positions
from ..weights import Rule
from .base import register, same
from .inputs import FLOAT, Inputs, InputSpec, attention_mask, token_ids
from .m2m_100 import M2M100, M2M100Config


class Speech2TextConfig(M2M100Config):
    """`transformers.Speech2TextConfig` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt = 10000
    d_model: PositiveInt = 256
    encoder_layers: PositiveInt = 12
    decoder_layers: PositiveInt = 6
    encoder_attention_heads: PositiveInt = 4
    decoder_attention_heads: PositiveInt = 4
    encoder_ffn_dim: PositiveInt = 2048
    decoder_ffn_dim: PositiveInt = 2048
    num_conv_layers: PositiveInt = 2
    conv_kernel_sizes: tuple[PositiveInt, ...] = (5, 5)
    conv_channels: PositiveInt = 1024
    input_feat_per_channel: PositiveInt = 80
    input_channels: PositiveInt = 1

    @model_validator(mode="after")
    def _conv_layers(self) -> Speech2TextConfig:
        if len(self.conv_kernel_sizes) != self.num_conv_layers:
            raise ValueError(f"conv_kernel_sizes has {len(self.conv_kernel_sizes)} entries, num_conv_layers is "
                             f"{self.num_conv_layers}: one kernel size per conv layer")
        return self

    @property
    def input_features(self) -> int:
        return self.input_feat_per_channel * self.input_channels


@register
class Speech2Text(M2M100):
    model_type = "speech_to_text"
    Config = Speech2TextConfig
    tasks = {None: "Speech2TextModel", "seq2seq-lm": "Speech2TextForConditionalGeneration"}
    token_embeddings = "decoder.embed_tokens"
    subsamples = True
    ignore_patterns = M2M100.ignore_patterns[:-1]  # decoder.embed_tokens is this model's token embedding
    config: Speech2TextConfig

    def input_specs(self, task: str | None) -> Inputs:
        """``input_features`` [batch, frames, features] (filterbanks) and its ``attention_mask``;
        ``decoder_input_ids`` (required: transformers has no default for them) and its mask."""
        c = self.config
        return Inputs([InputSpec("input_features", ("batch", "frames", c.input_features), FLOAT),
                       attention_mask(("batch", "frames"), "input_features"),
                       token_ids("decoder_input_ids", ("batch", "target"), c.vocab_size, self.pad_id),
                       attention_mask(("batch", "target"), "decoder_input_ids", name="decoder_attention_mask")])

    def subsample(self, features: Tensor) -> Tensor:
        """Conv1d (stride 2, padding kernel // 2) + GLU per layer: [batch, frames, features] ->
        [batch, ceil(frames / 2**layers), d_model]."""
        c, d = self.config, self.d_model
        x, channels = features.transpose(0, 2, 1), c.input_features
        for i, k in enumerate(c.conv_kernel_sizes):
            out = c.conv_channels if i < c.num_conv_layers - 1 else 2 * d
            x = glu(conv1d(x, f"encoder.conv.conv_layers.{i}", channels, out, k, 2, padding=(k // 2, k // 2)), axis=1)
            channels = out // 2
        return x.transpose(0, 2, 1)

    def cross_mask(self, mask: Tensor, states: Tensor) -> Tensor:
        """Frame t of the subsampled states is real when the row's input length exceeds t * 2**layers
        (i.e. t < ceil(length / 2**layers), transformers' ``_get_feat_extract_output_lengths``)."""
        g = mask.builder
        length = mask.cast("i64").sum(1, keepdims=True)
        t = g.add("iota", shape=[1, states.shape[1]], axis=1, dtype="i64")
        return fn.gt(length, t * (2 ** self.config.num_conv_layers)).cast("i64")

    def encode(self, features: Tensor, mask: Tensor) -> Tensor:
        g, d = features.builder, self.d_model
        x = self.subsample(features)
        if self.config.scale_embedding:
            x = x * math.sqrt(d)
        frames = self.cross_mask(mask, x)
        positions = fn.cumsum(frames, axis=1) * frames + self.pad_id
        x = x + fairseq_positions(positions, d, self.pad_id, g.dtype)
        return self.encoder_stack(x, frames)

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        convs = [f"encoder.conv.conv_layers.{i}.{p}" for i in range(self.config.num_conv_layers) for p in ("weight", "bias")]
        return [*super().rules(task, pooler=pooler), *same(*convs)]
