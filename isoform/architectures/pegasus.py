"""Pegasus (Zhang et al., 2019): the BART family with pre-LayerNorm blocks, a final LayerNorm per
stack, no embedding LayerNorm, and Marian-layout sinusoidal positions (computed in the graph; the
checkpoint's frozen ``embed_positions`` tables, when present, hold the same values and are skipped)."""

from __future__ import annotations

from pydantic import NonNegativeInt

from .bart import BartConfig, BartFamily
from .base import register


class PegasusConfig(BartConfig):
    pad_token_id: NonNegativeInt | None = 0
    eos_token_id: NonNegativeInt | list[int] | None = 1
    decoder_start_token_id: NonNegativeInt | None = 0


@register
class Pegasus(BartFamily):
    model_type = "pegasus"
    Config = PegasusConfig
    tasks = {None: "PegasusModel", "seq2seq-lm": "PegasusForConditionalGeneration"}
    ignore_patterns = (*BartFamily.ignore_patterns, r"embed_positions\.weight$")
    pre_norm = final_norm = True
    embedding_norm = None
    positions = "marian"
