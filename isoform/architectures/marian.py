"""Marian (Junczys-Dowmunt et al., 2018; the OPUS-MT models): BART's post-LayerNorm blocks without
an embedding LayerNorm, over sinusoidal positions in the Marian layout (computed in the graph;
transformers does not save them). Only checkpoints sharing one embedding between encoder, decoder
and LM head (``share_encoder_decoder_embeddings``, true for all OPUS-MT models) are supported."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveInt, model_validator

from .bart import BartConfig, BartFamily
from .base import register


class MarianConfig(BartConfig):
    vocab_size: PositiveInt = 58101
    pad_token_id: NonNegativeInt | None = 58100
    eos_token_id: NonNegativeInt | list[int] | None = 0
    decoder_start_token_id: NonNegativeInt | None = 58100
    share_encoder_decoder_embeddings: bool = True

    @model_validator(mode="after")
    def _shared(self) -> MarianConfig:
        if not self.share_encoder_decoder_embeddings:
            raise ValueError("separate encoder and decoder vocabularies (share_encoder_decoder_embeddings=false) "
                             "are not supported")
        return self


@register
class Marian(BartFamily):
    model_type = "marian"
    Config = MarianConfig
    tasks = {None: "MarianModel", "seq2seq-lm": "MarianMTModel"}
    ignore_patterns = (*BartFamily.ignore_patterns, r"embed_positions\.weight$")
    embedding_norm = None
    positions = "marian"
