"""CLIP (Radford et al., 2021): a causal text Transformer pooled at the end-of-text token and a ViT
image tower pooled at its class token, each projected into one embedding space; logits are scaled
cosine similarities of every image with every text.

Three model types, as transformers saves them: ``clip`` (both towers: `CLIPModel`, image
classification on the mean patch state, and either tower with its projection), ``clip_text_model``
and ``clip_vision_model`` (one tower, bare or with its projection). Texts and images have their own
batch dims (``texts``, ``images``) in `CLIPModel`.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from ..ir import Tensor, fn
from ..layers import (
    attention_mask,
    embedding,
    feed_forward,
    layer_norm,
    linear,
    linear_rules,
    multi_head_attention,
)
from ..layers.vision import patch_embeddings
from ..weights import Rule
from .base import ArchConfig, known_activation, norm_rules, register, same
from .inputs import Inputs, InputSpec, token_ids
from .inputs import attention_mask as mask_spec
from .towers import Towers
from .vision import VisionConfig


class _TowerConfig(ArchConfig):
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    projection_dim: PositiveInt = 512
    num_hidden_layers: PositiveInt = 12
    num_attention_heads: PositiveInt
    hidden_act: str = "quick_gelu"
    layer_norm_eps: PositiveFloat = 1e-5

    @field_validator("hidden_act")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _heads_divide(self) -> _TowerConfig:
        self.require_multiple("hidden_size", "num_attention_heads")
        return self


class CLIPTextConfig(_TowerConfig):
    """`transformers.CLIPTextConfig` keys isoform reads; all others are kept as they are."""

    model_type: str = "clip_text_model"
    vocab_size: PositiveInt = 49408
    hidden_size: PositiveInt = 512
    intermediate_size: PositiveInt = 2048
    num_attention_heads: PositiveInt = 8
    max_position_embeddings: PositiveInt = 77
    pad_token_id: int | None = 1
    eos_token_id: int = 49407  # 2: checkpoints from before transformers#24773 pool at the largest id


class CLIPVisionConfig(_TowerConfig, VisionConfig):
    """`transformers.CLIPVisionConfig` keys isoform reads; all others are kept as they are."""

    model_type: str = "clip_vision_model"
    hidden_size: PositiveInt = 768
    intermediate_size: PositiveInt = 3072
    num_attention_heads: PositiveInt = 12
    patch_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 32


class CLIPConfig(ArchConfig):
    """`transformers.CLIPConfig`: a text and a vision config, the shared ``projection_dim``."""

    text_config: CLIPTextConfig = Field(default_factory=CLIPTextConfig)
    vision_config: CLIPVisionConfig = Field(default_factory=CLIPVisionConfig)
    projection_dim: PositiveInt = 512
    interpolate_pos_encoding: bool = False  # isoform: images of any size (sets the vision tower's key)

    @model_validator(mode="after")
    def _forward_interpolation(self) -> CLIPConfig:
        if self.interpolate_pos_encoding:
            self.vision_config.interpolate_pos_encoding = True
        return self


def encoder(x: Tensor, name: str, c: _TowerConfig, mask: Tensor | None = None, *, causal: bool = False) -> Tensor:
    """CLIP's pre-LN encoder stack: x += attn(LN1(x)); x += mlp(LN2(x)), per layer."""
    dim = c.hidden_size
    for i in range(c.num_hidden_layers):
        layer = f"{name}encoder.layers.{i}"
        h = layer_norm(x.builder.tap("hidden_states", x), f"{layer}.layer_norm1", dim, c.layer_norm_eps)
        a = multi_head_attention(h, f"{layer}.self_attn", dim, c.num_attention_heads, mask, causal=causal,
                                 names=("q_proj", "k_proj", "v_proj"))
        x = x + linear(a, f"{layer}.self_attn.out_proj", dim, dim)
        h = layer_norm(x, f"{layer}.layer_norm2", dim, c.layer_norm_eps)
        x = x + feed_forward(h, f"{layer}.mlp.fc1", f"{layer}.mlp.fc2", dim, c.intermediate_size, c.hidden_act)
    return x.builder.tap("hidden_states", x)


def text_tower(ids: Tensor, mask: Tensor, c: CLIPTextConfig, name: str = "") -> tuple[Tensor, Tensor]:
    """Token + position embeddings, causal encoder with the padding mask, final LayerNorm; pooled at
    each row's first ``eos_token_id`` (legacy ``eos_token_id == 2``: at the largest id).
    Returns (last_hidden_state [batch, seq, dim], pooled [batch, dim])."""
    g, (b, s), dim = ids.builder, ids.shape, c.hidden_size
    positions = g.add("iota", shape=[s], axis=0, dtype="i64")
    x = (embedding(ids, f"{name}embeddings.token_embedding", c.vocab_size, dim)
         + embedding(positions, f"{name}embeddings.position_embedding", c.max_position_embeddings, dim))
    x = layer_norm(encoder(x, name, c, attention_mask(mask), causal=True), f"{name}final_layer_norm", dim, c.layer_norm_eps)
    target = ids if c.eos_token_id == 2 else fn.eq(ids, g.constant(c.eos_token_id, "i64")).cast("i64")
    at = fn.argmax(target, axis=-1, keepdims=True).cast("i64")
    picked = fn.eq(positions.reshape(1, s), at).reshape(b, s, 1)
    return x, fn.where(picked, x, g.constant(0.0, x.dtype)).sum(1)


def vision_tower(pixels: Tensor, c: CLIPVisionConfig, name: str = "") -> tuple[Tensor, Tensor]:
    """Patch embeddings (no bias) after a class embedding, positions, pre-LayerNorm, encoder; pooled
    is the post-LayerNorm class state. Returns (last_hidden_state, pooled)."""
    g, dim = pixels.builder, c.hidden_size
    x, grid = patch_embeddings(pixels, f"{name}embeddings.patch_embedding", c.num_channels, dim, c.patch_hw, bias=False)
    cls = fn.broadcast_to(g.param(f"{name}embeddings.class_embedding", [dim]).reshape(1, 1, dim), shape=[x.shape[0], 1, dim])
    positions = g.param(f"{name}embeddings.position_embedding.weight", [c.num_patches + 1, dim])
    x = fn.concat(cls, x, axis=1) + c.patch_positions(positions, 1, grid)
    x = encoder(layer_norm(x, f"{name}pre_layrnorm", dim, c.layer_norm_eps), name, c)
    return x, layer_norm(x[:, 0], f"{name}post_layernorm", dim, c.layer_norm_eps)


def normalized(x: Tensor) -> Tensor:
    """x / ||x|| over the last axis."""
    return x / fn.sqrt((x * x).sum(-1, keepdims=True))


def text_specs(c: CLIPTextConfig, batch: str = "batch") -> list[InputSpec]:
    return [token_ids("input_ids", (batch, "seq"), c.vocab_size, c.pad_token_id or 0), mask_spec((batch, "seq"), "input_ids")]


def tower_rules(name: str, vision: bool) -> list[Rule]:
    layer = f"{name}encoder.layers.{{i}}"
    if vision:
        embeddings = [*same(*(f"{name}embeddings.{n}" for n in ("class_embedding", "patch_embedding.weight",
                                                                 "position_embedding.weight"))),
                      *norm_rules(f"{name}pre_layrnorm", f"{name}post_layernorm")]
    else:
        embeddings = [*same(f"{name}embeddings.token_embedding.weight", f"{name}embeddings.position_embedding.weight"),
                      *norm_rules(f"{name}final_layer_norm")]
    return [*embeddings, *norm_rules(f"{layer}.layer_norm1", f"{layer}.layer_norm2"),
            *linear_rules(*(f"{layer}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")),
                          f"{layer}.mlp.fc1", f"{layer}.mlp.fc2")]


def projection(x: Tensor, name: str, dim: int, out: int) -> Tensor:
    return linear(x, name, dim, out, bias=False)


@register
class Clip(Towers):
    model_type = "clip"
    Config = CLIPConfig
    tasks = {None: "CLIPModel", "image-classification": "CLIPForImageClassification",
             "text-features": "CLIPTextModelWithProjection", "image-features": "CLIPVisionModelWithProjection"}
    head_patterns = (r"^text_model\.", r"^vision_model\.", r"^text_projection\.", r"^visual_projection\.",
                     r"^logit_scale$", r"^classifier\.")
    config: CLIPConfig

    @property
    def max_length(self) -> int:
        return self.config.text_config.max_position_embeddings

    @property
    def pad_id(self) -> int:
        return self.config.text_config.pad_token_id or 0

    def input_specs(self, task: str | None) -> Inputs:
        t, v = self.config.text_config, self.config.vision_config
        specs = {None: [*text_specs(t, "texts"), v.pixel_spec("images")], "text-features": text_specs(t)}.get(task, [v.pixel_spec()])
        return Inputs(specs, limits=self.position_limits(("seq",)))

    def forward(self, task: str | None, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        t, v, proj = c.text_config, c.vision_config, c.projection_dim
        if task == "image-classification":
            states, _ = vision_tower(inputs["pixel_values"], v, "vision_model.")
            return {"logits": linear(states[:, 1:].mean(1), "classifier", v.hidden_size, c.num_labels)}
        out = {}
        if "input_ids" in inputs:
            with inputs["input_ids"].builder.tap_scope("text"):
                states, pooled = text_tower(inputs["input_ids"], inputs["attention_mask"], t, "text_model.")
            out["text_embeds"] = projection(pooled, "text_projection", t.hidden_size, proj)
            out["last_hidden_state"] = states
        if "pixel_values" in inputs:
            with inputs["pixel_values"].builder.tap_scope("vision"):
                states, pooled = vision_tower(inputs["pixel_values"], v, "vision_model.")
            out["image_embeds"] = projection(pooled, "visual_projection", v.hidden_size, proj)
            out["last_hidden_state"] = states
        if task is not None:
            return out
        text, image = normalized(out["text_embeds"]), normalized(out["image_embeds"])
        g = text.builder
        per_text = (text @ image.transpose(1, 0)) * fn.exp(g.param("logit_scale", []))
        return {"logits_per_image": per_text.transpose(1, 0), "logits_per_text": per_text, "text_embeds": text,
                "image_embeds": image}

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        text = [*tower_rules("text_model.", False), *linear_rules("text_projection", bias=False)]
        vision = [*tower_rules("vision_model.", True), *linear_rules("visual_projection", bias=False)]
        if task == "image-classification":
            return [*tower_rules("vision_model.", True), *linear_rules("classifier")]
        return {"text-features": text, "image-features": vision}.get(task, [*text, *vision, *same("logit_scale")])


@register
class ClipText(Towers):
    model_type = "clip_text_model"
    Config = CLIPTextConfig
    prefix = "text_model."  # CLIPTextModelWithProjection's tower; the bare CLIPTextModel saves without it
    tasks = {None: "CLIPTextModel", "text-features": "CLIPTextModelWithProjection"}
    head_patterns = (r"^text_projection\.",)
    config: CLIPTextConfig

    def input_specs(self, task: str | None) -> Inputs:
        return Inputs(text_specs(self.config), limits=self.position_limits(("seq",)))

    def forward(self, task: str | None, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        states, pooled = text_tower(inputs["input_ids"], inputs["attention_mask"], c)
        if task is None:
            return {"last_hidden_state": states, "pooler_output": pooled}
        return {"text_embeds": projection(pooled, "text_projection", c.hidden_size, c.projection_dim),
                "last_hidden_state": states}

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        head = linear_rules("text_projection", bias=False, prefixed=False) if task else []
        return [*tower_rules("", False), *head]


@register
class ClipVision(Towers):
    model_type = "clip_vision_model"
    Config = CLIPVisionConfig
    prefix = "vision_model."
    tasks = {None: "CLIPVisionModel", "image-features": "CLIPVisionModelWithProjection"}
    head_patterns = (r"^visual_projection\.",)
    config: CLIPVisionConfig

    @property
    def max_length(self) -> None:
        return None

    def input_specs(self, task: str | None) -> Inputs:
        return Inputs([self.config.pixel_spec()])

    def forward(self, task: str | None, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        states, pooled = vision_tower(inputs["pixel_values"], c)
        if task is None:
            return {"last_hidden_state": states, "pooler_output": pooled}
        return {"image_embeds": projection(pooled, "visual_projection", c.hidden_size, c.projection_dim),
                "last_hidden_state": states}

    def rules(self, task: str | None, *, pooler: bool) -> list[Rule]:
        head = linear_rules("visual_projection", bias=False, prefixed=False) if task else []
        return [*tower_rules("", True), *head]
