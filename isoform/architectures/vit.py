"""ViT (Dosovitskiy et al., 2020): an image cut into patches, each linearly embedded, a [CLS] token
prepended, learned positions added, then a pre-LayerNorm Transformer encoder; and DeiT (Touvron et
al., 2020), the same network with a second, distillation token.

Heads as transformers': image classification on the [CLS] state (DeiT with teacher: the mean of a
[CLS] and a distillation classifier), and SimMIM masked image modeling (masked patches replaced by
a learned mask token; a 1x1 conv and pixel shuffle reconstruct the image from the patch states).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
from pydantic import PositiveFloat, PositiveInt, field_validator, model_validator

from ..errors import ConfigError, InputError
from ..ir import Tensor, fn
from ..layers import activation, feed_forward, layer_norm, linear, linear_rules, merge_heads, split_heads
from ..layers.vision import conv2d, patch_embeddings, pixel_shuffle, tokens_to_image
from ..weights import Rule
from .base import known_activation, norm_rules, register, same
from .vision import VisionConfig, VisionEncoder


class ViTConfig(VisionConfig):
    """`transformers.ViTConfig` / `DeiTConfig` keys isoform reads; all others are kept as they are."""

    hidden_size: PositiveInt = 768
    num_hidden_layers: PositiveInt = 12
    num_attention_heads: PositiveInt = 12
    intermediate_size: PositiveInt = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: PositiveFloat = 1e-12
    qkv_bias: bool = True
    encoder_stride: PositiveInt = 16
    pooler_output_size: PositiveInt | None = None
    pooler_act: str = "tanh"

    @field_validator("hidden_act", "pooler_act")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _consistent(self) -> ViTConfig:
        self.require_multiple("hidden_size", "num_attention_heads")
        return self


QKV = ("attention.attention.query", "attention.attention.key", "attention.attention.value")
LINEARS = ("attention.output.dense", "intermediate.dense", "output.dense")


@register
class ViT(VisionEncoder):
    model_type = "vit"
    Config = ViTConfig
    prefix = "vit."
    tasks = {None: "ViTModel", "image-classification": "ViTForImageClassification",
             "masked-image-modeling": "ViTForMaskedImageModeling"}
    head_patterns = (r"^classifier\.", r"^decoder\.", r"^pooler\.", r"^embeddings\.mask_token$")
    pooler_param = "pooler.dense.weight"
    special_tokens = ("cls_token",)  # prepended, in order, before the patch tokens
    config: ViTConfig

    # -- backbone -------------------------------------------------------------------------------
    def embeddings(self, pixels: Tensor, masked: Tensor | None) -> Tensor:
        c, g = self.config, pixels.builder
        dim = c.hidden_size
        x, grid = patch_embeddings(pixels, "embeddings.patch_embeddings.projection", c.num_channels, dim, c.patch_hw)
        batch = x.shape[0]
        if masked is not None:
            m = masked.cast(x.dtype).reshape(batch, c.num_patches, 1)
            x = x * (1.0 - m) + g.param("embeddings.mask_token", [1, 1, dim]) * m
        tokens = [fn.broadcast_to(g.param(f"embeddings.{t}", [1, 1, dim]), shape=[batch, 1, dim])
                  for t in self.special_tokens]
        x = fn.concat(*tokens, x, axis=1)
        special = len(self.special_tokens)
        positions = g.param("embeddings.position_embeddings", [1, c.num_patches + special, dim])
        return x + c.patch_positions(positions[0], special, grid)

    def layer(self, x: Tensor, name: str) -> Tensor:
        """One pre-LN block: x += attn(LN(x)); x += mlp(LN(x))."""
        c, dim = self.config, self.config.hidden_size
        h = layer_norm(x, f"{name}.layernorm_before", dim, c.layer_norm_eps)
        q, k, v = (split_heads(linear(h, f"{name}.attention.attention.{n}", dim, dim, bias=c.qkv_bias), c.num_attention_heads)
                   for n in ("query", "key", "value"))
        x = x + linear(merge_heads(x.builder.tap("attentions", fn.attention(q, k, v))), f"{name}.attention.output.dense", dim, dim)
        h = layer_norm(x, f"{name}.layernorm_after", dim, c.layer_norm_eps)
        return x + feed_forward(h, f"{name}.intermediate.dense", f"{name}.output.dense", dim, c.intermediate_size, c.hidden_act)

    def backbone(self, pixels: Tensor, masked: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        c = self.config
        x = self.embeddings(pixels, masked)
        for i in range(c.num_hidden_layers):
            x = self.layer(x.builder.tap("hidden_states", x), f"encoder.layer.{i}")
        x = layer_norm(x.builder.tap("hidden_states", x), "layernorm", c.hidden_size, c.layer_norm_eps)
        out = {"last_hidden_state": x}
        if pooler:
            size = c.pooler_output_size or c.hidden_size
            out["pooler_output"] = activation(c.pooler_act)(linear(x[:, 0], "pooler.dense", c.hidden_size, size))
        return out

    # -- heads ----------------------------------------------------------------------------------
    def uses_pooler(self, task: str | None) -> bool:
        return task is None

    def head(self, task: str, states: dict[str, Tensor], mask: Tensor | None = None) -> dict[str, Tensor]:
        x, c = states["last_hidden_state"], self.config
        if task == "image-classification":
            return {"logits": linear(x[:, 0], "classifier", c.hidden_size, c.num_labels)}
        return {"reconstruction": self.reconstruct(x[:, len(self.special_tokens):])}

    def reconstruct(self, patches: Tensor) -> Tensor:
        """SimMIM decoder: patch states [batch, patches, dim] -> pixels [batch, channels, H, W]."""
        c = self.config
        h, w = c.grid
        if h != w:  # transformers reshapes to a square of side floor(sqrt(patches))
            raise ConfigError(f"masked-image-modeling needs a square patch grid, image_size {c.image_hw} with patch_size "
                              f"{c.patch_hw} gives {h}x{w}")
        out = c.encoder_stride ** 2 * c.num_channels
        x = conv2d(tokens_to_image(patches, h, w), "decoder.0", c.hidden_size, out, 1)
        return pixel_shuffle(x, c.encoder_stride)

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        c = self.config
        if "bool_masked_pos" in inputs and c.patch_hw != (c.encoder_stride, c.encoder_stride):
            raise InputError(f"bool_masked_pos needs patch_size == encoder_stride (the reconstruction must have the input's "
                             f"size), this config has patch_size {c.patch_size} and encoder_stride {c.encoder_stride}")

    # -- weights --------------------------------------------------------------------------------
    def backbone_rules(self, task: str | None) -> list[Rule]:
        tokens = [f"embeddings.{t}" for t in self.special_tokens]
        if task == "masked-image-modeling":
            tokens.append("embeddings.mask_token")
        layer = "encoder.layer.{i}"
        return [*same(*tokens, "embeddings.position_embeddings"), *conv_rules("embeddings.patch_embeddings.projection"),
                *norm_rules(f"{layer}.layernorm_before", f"{layer}.layernorm_after", "layernorm"),
                *linear_rules(*(f"{layer}.{n}" for n in QKV), bias=self.config.qkv_bias),
                *linear_rules(*(f"{layer}.{n}" for n in LINEARS))]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "image-classification":
            return linear_rules("classifier", prefixed=False)
        if task == "masked-image-modeling":
            return conv_rules("decoder.0", prefixed=False)
        return []

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        return [*self.backbone_rules(task), *(linear_rules("pooler.dense") if pooler else []), *self.head_rules(task)]


def conv_rules(name: str, prefixed: bool = True) -> list[Rule]:
    """A conv's ``weight`` and ``bias``, kept in torch's layout."""
    return same(f"{name}.weight", f"{name}.bias", prefixed=prefixed)


@register
class DeiT(ViT):
    model_type = "deit"
    prefix = "deit."
    tasks = {None: "DeiTModel", "image-classification": "DeiTForImageClassification",
             "masked-image-modeling": "DeiTForMaskedImageModeling"}
    checkpoint_classes = {"DeiTForImageClassificationWithTeacher": "image-classification"}
    head_patterns = (*ViT.head_patterns, r"^cls_classifier\.", r"^distillation_classifier\.")
    special_tokens = ("cls_token", "distillation_token")
    with_teacher = False  # image-classification: the distilled checkpoint's two heads, if `resolve` finds them

    def resolve(self, keys: Collection[str]) -> None:
        super().resolve(keys)
        self.with_teacher = "cls_classifier.weight" in keys
        if self.with_teacher:
            self.tasks = {**self.tasks, "image-classification": "DeiTForImageClassificationWithTeacher"}

    def head(self, task: str, states: dict[str, Tensor], mask: Tensor | None = None) -> dict[str, Tensor]:
        if task != "image-classification" or not self.with_teacher:
            return super().head(task, states)
        x, c = states["last_hidden_state"], self.config
        cls = linear(x[:, 0], "cls_classifier", c.hidden_size, c.num_labels)
        distillation = linear(x[:, 1], "distillation_classifier", c.hidden_size, c.num_labels)
        return {"logits": (cls + distillation) * 0.5, "cls_logits": cls, "distillation_logits": distillation}

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "image-classification" and self.with_teacher:
            return linear_rules("cls_classifier", "distillation_classifier", prefixed=False)
        return super().head_rules(task)
