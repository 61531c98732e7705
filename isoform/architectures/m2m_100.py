"""M2M100 (Fan et al., 2020) and NLLB checkpoints of that type: the BART family with pre-LayerNorm
blocks, a final LayerNorm per stack, scaled embeddings, fairseq sinusoidal positions counted over
non-padding tokens (from ``pad_token_id + 1``; padding gets a zero vector), and no
``final_logits_bias``. Positions are computed in the graph, so inputs have no length limit."""

from __future__ import annotations

from pydantic import PositiveInt

from .bart import BartConfig, BartFamily
from .base import register


class M2M100Config(BartConfig):
    vocab_size: PositiveInt = 128112
    activation_function: str = "relu"
    scale_embedding: bool = True


@register
class M2M100(BartFamily):
    model_type = "m2m_100"
    Config = M2M100Config
    tasks = {None: "M2M100Model", "seq2seq-lm": "M2M100ForConditionalGeneration"}
    pre_norm = final_norm = True
    embedding_norm = None
    positions = "fairseq"
    logits_bias = False
