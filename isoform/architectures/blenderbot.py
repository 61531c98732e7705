"""Blenderbot and BlenderbotSmall (Roller et al., 2020): the BART family with learned positions
that start at 0. Blenderbot has pre-LayerNorm blocks and a final LayerNorm per stack;
BlenderbotSmall has BART's post-LayerNorm blocks and embedding LayerNorm, which its decoder applies
to the token embeddings before adding positions."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveInt

from .bart import BartConfig, BartFamily
from .base import register


class BlenderbotConfig(BartConfig):
    vocab_size: PositiveInt = 8008
    max_position_embeddings: PositiveInt = 128
    pad_token_id: NonNegativeInt | None = 0
    decoder_start_token_id: NonNegativeInt | None = 1


@register
class Blenderbot(BartFamily):
    model_type = "blenderbot"
    Config = BlenderbotConfig
    tasks = {None: "BlenderbotModel", "seq2seq-lm": "BlenderbotForConditionalGeneration"}
    pre_norm = final_norm = True
    embedding_norm = None
    position_offset = 0


class BlenderbotSmallConfig(BlenderbotConfig):
    vocab_size: PositiveInt = 50265
    max_position_embeddings: PositiveInt = 512


@register
class BlenderbotSmall(BartFamily):
    model_type = "blenderbot-small"
    Config = BlenderbotSmallConfig
    tasks = {None: "BlenderbotSmallModel", "seq2seq-lm": "BlenderbotSmallForConditionalGeneration"}
    embedding_norm = "decoder-before"
    position_offset = 0
