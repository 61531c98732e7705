"""Wav2Vec2 (Baevski et al., 2020) and XLSR-Wav2Vec2 (same model_type): a conv feature encoder over
the raw waveform (GroupNorm on its first layer, ``feat_extract_norm="group"``, or LayerNorm after
every layer, ``"layer"``), a LayerNorm + linear feature projection, a weight-normalized grouped
positional conv, then a Transformer encoder, post-LN (``do_stable_layer_norm=False``) or pre-LN with a
final LayerNorm (``True``, XLSR), optionally with MMS attention adapters (``adapter_attn_dim``) and a
conv adapter after the encoder (``add_adapter``).

Heads as transformers': CTC (``lm_head`` over every frame), utterance classification (``projector``,
mean over the frames of real audio, ``classifier``), frame classification, and x-vectors (TDNN
layers, mean and standard deviation over the frames, two linears). The classification heads read
the last hidden state or, with ``use_weighted_layer_sum``, a softmax-weighted sum of the encoder
input and every layer's output (transformers v5's ``hidden_states``: before the stable variant's
final LayerNorm).

Padded batches: frames past a row's length (the conv length formula of its mask's ones) are zeroed
before the positional conv and masked as attention keys; the feature encoder itself sees the
padding samples, as in transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator, model_validator

from ..errors import ConfigError, InputError
from ..ir import Tensor, fn
from ..layers import (
    activation,
    feed_forward,
    layer_norm,
    linear,
    linear_rules,
    mean_pool,
    merge_heads,
    split_heads,
)
from ..layers.audio import (
    ConvLength,
    channel_layer_norm,
    conv1d,
    frame_mask,
    glu,
    group_norm,
    samples_needed,
    weight_norm_rules,
)
from ..weights import Rename, Reshape, Rule, Transpose
from .audio import AudioConfig, AudioEncoder, AudioStates
from .base import known_activation, norm_rules, register, same

CONV_NORM_EPS = 1e-5  # the feature encoder's and adapters' norms use torch's default eps, not layer_norm_eps


class Wav2Vec2Config(AudioConfig):
    """`transformers.Wav2Vec2Config` keys isoform reads; all others are kept as they are."""

    vocab_size: PositiveInt | None = 32
    hidden_size: PositiveInt = 768
    num_hidden_layers: PositiveInt = 12
    num_attention_heads: PositiveInt = 12
    intermediate_size: PositiveInt = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: PositiveFloat = 1e-5
    feat_extract_norm: Literal["group", "layer"] = "group"
    feat_extract_activation: str = "gelu"
    conv_bias: bool = False
    num_conv_pos_embeddings: PositiveInt = 128
    num_conv_pos_embedding_groups: PositiveInt = 16
    do_stable_layer_norm: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: PositiveInt = 256
    add_adapter: bool = False
    adapter_kernel_size: PositiveInt = 3
    adapter_stride: PositiveInt = 2
    num_adapter_layers: NonNegativeInt = 3
    output_hidden_size: PositiveInt | None = None
    adapter_attn_dim: PositiveInt | None = None
    tdnn_dim: tuple[PositiveInt, ...] = (512, 512, 512, 512, 1500)
    tdnn_kernel: tuple[PositiveInt, ...] = (5, 3, 3, 1, 1)
    tdnn_dilation: tuple[PositiveInt, ...] = (1, 2, 3, 1, 1)
    xvector_output_dim: PositiveInt = 512

    @field_validator("hidden_act", "feat_extract_activation")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> Wav2Vec2Config:
        self.require_multiple("hidden_size", "num_attention_heads")
        self.require_multiple("hidden_size", "num_conv_pos_embedding_groups")
        if not len(self.tdnn_dim) == len(self.tdnn_kernel) == len(self.tdnn_dilation) or not self.tdnn_dim:
            raise ValueError(f"tdnn_dim, tdnn_kernel and tdnn_dilation must have one (and the same number of) entries "
                             f"per TDNN layer, got {len(self.tdnn_dim)}, {len(self.tdnn_kernel)} and {len(self.tdnn_dilation)}")
        return self

    @property
    def adapter_size(self) -> int:
        """Width of the adapter's output (transformers' ``output_hidden_size or hidden_size``)."""
        return self.output_hidden_size or self.hidden_size

    @property
    def output_size(self) -> int:
        """Width of ``last_hidden_state``."""
        return self.adapter_size if self.add_adapter else self.hidden_size


ATTENTION = tuple(f"attention.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj"))
FEED_FORWARD = ("feed_forward.intermediate_dense", "feed_forward.output_dense")
POS_CONV = "encoder.pos_conv_embed.conv"
NO_ADAPTER = ("audio-classification", "audio-frame-classification")  # transformers refuses add_adapter for these


@register
class Wav2Vec2(AudioEncoder):
    model_type = "wav2vec2"
    Config = Wav2Vec2Config
    prefix = "wav2vec2."
    tasks = {None: "Wav2Vec2Model", "ctc": "Wav2Vec2ForCTC", "audio-classification": "Wav2Vec2ForSequenceClassification",
             "audio-frame-classification": "Wav2Vec2ForAudioFrameClassification", "audio-xvector": "Wav2Vec2ForXVector"}
    # heads of other tasks, the pretraining quantizer and projections, the x-vector loss weight
    head_patterns = (r"^lm_head\.", r"^projector\.", r"^classifier\.", r"^layer_weights$", r"^tdnn\.",
                     r"^feature_extractor\.(weight|bias)$", r"^objective\.", r"^quantizer\.", r"^project_(hid|q)\.")
    # SpecAugment's mask embedding: used only in training
    ignore_patterns = (*AudioEncoder.ignore_patterns, r"(^|\.)masked_spec_embed$")
    config: Wav2Vec2Config

    def check_task(self, task: str | None) -> None:
        super().check_task(task)
        c = self.config
        if task in NO_ADAPTER and c.add_adapter:
            raise ConfigError(f"task {task!r} does not support the conv adapter (config add_adapter=True), as transformers")
        if task == "ctc" and c.vocab_size is None:
            raise ConfigError("task 'ctc' needs config key 'vocab_size' (the size of the CTC head)")

    # -- frames ---------------------------------------------------------------------------------
    def adapter_steps(self) -> list[ConvLength]:
        """The adapter's length formula as transformers writes it (kernel 1, whatever the conv's)."""
        c = self.config
        return [(1, c.adapter_stride)] * c.num_adapter_layers if c.add_adapter else []

    def frame_steps(self, task: str | None) -> list[ConvLength]:
        if task == "audio-xvector":  # transformers' TDNN lengths ignore the dilation
            return [*self.config.conv_steps, *self.adapter_steps(), *((k, 1) for k in self.config.tdnn_kernel)]
        return self.config.conv_steps

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        super().check_inputs(inputs, task)
        if task == "audio-xvector":  # the dilated TDNN convs need more frames than their length formula says
            c = self.config
            span = [(d * (k - 1) + 1, 1) for k, d in zip(c.tdnn_kernel, c.tdnn_dilation)]
            need = samples_needed([*c.conv_steps, *self.adapter_steps(), *span])[0]
            if inputs["input_values"].shape[1] < need:
                raise InputError(f"input_values has {inputs['input_values'].shape[1]} samples, fewer than the {need} "
                                 f"the x-vector TDNN layers need for one frame")

    # -- backbone -------------------------------------------------------------------------------
    def feature_encoder(self, values: Tensor) -> Tensor:
        """Waveforms [batch, samples] -> conv features [batch, conv_dim[-1], frames]."""
        c = self.config
        x = values.reshape(values.shape[0], 1, values.shape[1])
        act = activation(c.feat_extract_activation)
        channels = 1
        for i, (dim, kernel, stride) in enumerate(zip(c.conv_dim, c.conv_kernel, c.conv_stride)):
            name = f"feature_extractor.conv_layers.{i}"
            x = conv1d(x, f"{name}.conv", channels, dim, kernel, stride, bias=c.conv_bias)
            if c.feat_extract_norm == "layer":
                x = channel_layer_norm(x, f"{name}.layer_norm", dim, CONV_NORM_EPS)
            elif i == 0:
                x = group_norm(x, f"{name}.layer_norm", dim, dim, CONV_NORM_EPS)
            x = act(x)
            channels = dim
        return x

    def positions(self, x: Tensor) -> Tensor:
        """The positional conv embedding of x [batch, frames, dim]: 'same' padding (one frame less on
        the right for an even kernel, as transformers drops the last), grouped, then the activation."""
        c, dim = self.config, self.config.hidden_size
        k = c.num_conv_pos_embeddings
        p = conv1d(x.transpose(0, 2, 1), POS_CONV, dim, dim, k, padding=(k // 2, k // 2 - (k % 2 == 0)),
                   groups=c.num_conv_pos_embedding_groups)
        return activation(c.feat_extract_activation)(p).transpose(0, 2, 1)

    def attention(self, x: Tensor, name: str, keys: Tensor) -> Tensor:
        c, dim = self.config, self.config.hidden_size
        q, k, v = (split_heads(linear(x, f"{name}.attention.{n}_proj", dim, dim), c.num_attention_heads) for n in "qkv")
        return linear(merge_heads(x.builder.tap("attentions", fn.attention(q, k, v, keys))), f"{name}.attention.out_proj",
                      dim, dim)

    def feed_forward(self, x: Tensor, name: str) -> Tensor:
        c = self.config
        return feed_forward(x, f"{name}.feed_forward.intermediate_dense", f"{name}.feed_forward.output_dense",
                            c.hidden_size, c.intermediate_size, c.hidden_act)

    def layer(self, x: Tensor, i: int, keys: Tensor) -> Tensor:
        c, dim, eps = self.config, self.config.hidden_size, self.config.layer_norm_eps
        name = f"encoder.layers.{i}"
        if not c.do_stable_layer_norm:  # post-LN
            x = layer_norm(x + self.attention(x, name, keys), f"{name}.layer_norm", dim, eps)
            return layer_norm(x + self.feed_forward(x, name), f"{name}.final_layer_norm", dim, eps)
        x = x + self.attention(layer_norm(x, f"{name}.layer_norm", dim, eps), name, keys)
        x = x + self.feed_forward(layer_norm(x, f"{name}.final_layer_norm", dim, eps), name)
        if c.adapter_attn_dim is not None:  # MMS language adapter
            a = layer_norm(x, f"{name}.adapter_layer.norm", dim, CONV_NORM_EPS)
            a = activation("relu")(linear(a, f"{name}.adapter_layer.linear_1", dim, c.adapter_attn_dim))
            x = x + linear(a, f"{name}.adapter_layer.linear_2", c.adapter_attn_dim, dim)
        return x

    def encoder(self, x: Tensor, frames: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The Transformer over x [batch, frames, dim] -> (last state, transformers' hidden_states)."""
        c, dim = self.config, self.config.hidden_size
        b, t, _ = x.shape
        x = x * frames.cast(x.dtype).reshape(b, t, 1)  # padding frames zeroed, as transformers
        x = x + self.positions(x)
        if not c.do_stable_layer_norm:
            x = layer_norm(x, "encoder.layer_norm", dim, c.layer_norm_eps)
        keys = frames.reshape(b, 1, 1, t)
        layers = [x]
        for i in range(c.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), i, keys)
            layers.append(x)
        x = x.builder.tap("hidden_states", x)  # before the norm, as transformers records it
        if c.do_stable_layer_norm:
            x = layer_norm(x, "encoder.layer_norm", dim, c.layer_norm_eps)
        return x, layers

    def adapter(self, x: Tensor) -> Tensor:
        """The conv adapter: [batch, frames, hidden_size] -> [batch, frames', output_hidden_size]."""
        c, size = self.config, self.config.adapter_size
        if size != c.hidden_size:
            x = layer_norm(linear(x, "adapter.proj", c.hidden_size, size), "adapter.proj_layer_norm", size, CONV_NORM_EPS)
        x = x.transpose(0, 2, 1)
        for i in range(c.num_adapter_layers):
            x = glu(conv1d(x, f"adapter.layers.{i}.conv", size, 2 * size, c.adapter_kernel_size, c.adapter_stride,
                           padding=(1, 1)))
        return x.transpose(0, 2, 1)

    def backbone(self, values: Tensor, mask: Tensor) -> AudioStates:
        c = self.config
        features = self.feature_encoder(values).transpose(0, 2, 1)  # [batch, frames, conv_dim[-1]]
        frames = frame_mask(mask, features, c.conv_steps)
        extract = layer_norm(features, "feature_projection.layer_norm", c.conv_dim[-1], c.layer_norm_eps)
        x = linear(extract, "feature_projection.projection", c.conv_dim[-1], c.hidden_size)
        x, layers = self.encoder(x, frames)
        if c.add_adapter:
            x = self.adapter(x)
        return AudioStates({"last_hidden_state": x, "extract_features": extract}, frames, layers)

    # -- heads ----------------------------------------------------------------------------------
    def states_for_head(self, states: AudioStates) -> Tensor:
        """The last hidden state, or the softmax(``layer_weights``)-weighted sum of the layers."""
        if not self.config.use_weighted_layer_sum:
            return states.outputs["last_hidden_state"]
        n = len(states.layers)
        b, t, dim = states.layers[0].shape
        stacked = fn.concat(*(h.reshape(b, 1, t, dim) for h in states.layers), axis=1)
        weights = fn.softmax(states.frames.builder.param("layer_weights", [n]), axis=-1)
        return (stacked * weights.reshape(1, n, 1, 1)).sum(1)

    def head(self, task: str, states: AudioStates, mask: Tensor) -> dict[str, Tensor]:
        c = self.config
        if task == "ctc":
            return {"logits": linear(states.outputs["last_hidden_state"], "lm_head", c.output_size, c.vocab_size)}
        x = self.states_for_head(states)
        if task == "audio-frame-classification":
            return {"logits": linear(x, "classifier", c.hidden_size, c.num_labels)}
        if task == "audio-classification":
            x = linear(x, "projector", c.hidden_size, c.classifier_proj_size)
            return {"logits": linear(mean_pool(x, states.frames), "classifier", c.classifier_proj_size, c.num_labels)}
        return self.xvector(x, mask)

    def xvector(self, x: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """TDNN layers, then statistics pooling (mean, unbiased std) over the frames of real audio."""
        c = self.config
        x = linear(x, "projector", x.shape[-1], c.tdnn_dim[0]).transpose(0, 2, 1)
        inputs = c.tdnn_dim[0]
        for i, (dim, k, d) in enumerate(zip(c.tdnn_dim, c.tdnn_kernel, c.tdnn_dilation)):
            x = activation("relu")(conv1d(x, f"tdnn.{i}.kernel", inputs, dim, k, dilation=d))
            inputs = dim
        x = x.transpose(0, 2, 1)  # [batch, frames, tdnn_dim[-1]]
        b, t, _ = x.shape
        m = frame_mask(mask, x, self.frame_steps("audio-xvector")).cast(x.dtype).reshape(b, t, 1)
        n = m.sum(1)  # [batch, 1]
        mean = (x * m).sum(1) / n
        centered = (x - mean.reshape(b, 1, inputs)) * m
        std = fn.sqrt((centered * centered).sum(1) / (n - 1.0))
        embeddings = linear(fn.concat(mean, std, axis=-1), "feature_extractor", 2 * inputs, c.xvector_output_dim)
        return {"logits": linear(embeddings, "classifier", c.xvector_output_dim, c.xvector_output_dim),
                "embeddings": embeddings}

    # -- weights --------------------------------------------------------------------------------
    def backbone_rules(self) -> list[Rule]:
        c = self.config
        convs = [f"feature_extractor.conv_layers.{i}" for i in range(len(c.conv_dim))]
        norms = convs if c.feat_extract_norm == "layer" else convs[:1]
        rules = [*same(*(f"{n}.conv.weight" for n in convs)), *(same(*(f"{n}.conv.bias" for n in convs)) if c.conv_bias else []),
                 *norm_rules(*(f"{n}.layer_norm" for n in norms), "feature_projection.layer_norm", "encoder.layer_norm"),
                 *linear_rules("feature_projection.projection"),
                 *weight_norm_rules(POS_CONV), *same(f"{POS_CONV}.bias")]
        layer = "encoder.layers.{i}"
        rules += [*linear_rules(*(f"{layer}.{n}" for n in (*ATTENTION, *FEED_FORWARD))),
                  *norm_rules(f"{layer}.layer_norm", f"{layer}.final_layer_norm")]
        if c.do_stable_layer_norm and c.adapter_attn_dim is not None:
            rules += [*norm_rules(f"{layer}.adapter_layer.norm"),
                      *linear_rules(f"{layer}.adapter_layer.linear_1", f"{layer}.adapter_layer.linear_2")]
        if c.add_adapter:
            if c.adapter_size != c.hidden_size:
                rules += [*linear_rules("adapter.proj"), *norm_rules("adapter.proj_layer_norm")]
            rules += same("adapter.layers.{i}.conv.weight", "adapter.layers.{i}.conv.bias")
        return rules

    def head_rules(self, task: str | None) -> list[Rule]:
        c = self.config
        weights = same("layer_weights", prefixed=False) if c.use_weighted_layer_sum and task not in (None, "ctc") else []
        if task == "ctc":
            return linear_rules("lm_head", prefixed=False)
        if task == "audio-frame-classification":
            return [*weights, *linear_rules("classifier", prefixed=False)]
        if task == "audio-classification":
            return [*weights, *linear_rules("projector", "classifier", prefixed=False)]
        if task == "audio-xvector":
            tdnn = []
            inputs = c.tdnn_dim[0]
            for i, (dim, k) in enumerate(zip(c.tdnn_dim, c.tdnn_kernel)):  # Linear(in * k, out) used as a conv
                layout = [Reshape((dim, k, inputs), back=(dim, k * inputs)), Transpose((0, 2, 1))]
                tdnn += [Rename(f"tdnn.{i}.kernel.weight", f"tdnn.{i}.kernel.weight", layout, prefixed=False),
                         *same(f"tdnn.{i}.kernel.bias", prefixed=False)]
                inputs = dim
            return [*weights, *linear_rules("projector", "feature_extractor", "classifier", prefixed=False), *tdnn]
        return []

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        return [*self.backbone_rules(), *self.head_rules(task)]
