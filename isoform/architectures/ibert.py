"""I-BERT (Kim et al., 2021) with ``quant_mode=False``: RoBERTa, whose GELU, softmax and LayerNorm
run in float (``hidden_act`` must be ``"gelu"``, as transformers demands). The quantization state that
transformers saves next to each weight (activation ranges, integer weights, scaling factors,
LayerNorm shifts) is unused in float mode and skipped on load. ``quant_mode=True`` (integer-only
inference, which needs that calibration state) is refused with a ConfigError."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from .base import register
from .roberta import Roberta, RobertaConfig, _classes

QUANT_STATE = (r"\.(act_scaling_factor|x_min|x_max|weight_integer|bias_integer|weight_scaling_factor"
               r"|fc_scaling_factor)$", r"\.LayerNorm\.shift$")


class IBertConfig(RobertaConfig):
    """`transformers.IBertConfig` keys isoform reads; ``force_dequant`` and all others are kept."""

    vocab_size: PositiveInt = 30522
    max_position_embeddings: PositiveInt = 512
    type_vocab_size: NonNegativeInt = 2
    layer_norm_eps: PositiveFloat = 1e-12
    quant_mode: bool = False

    @field_validator("hidden_act")
    @classmethod
    def _gelu_only(cls, v: str) -> str:
        if v != "gelu":
            raise ValueError(f"I-BERT supports only hidden_act 'gelu' (its IntGELU), got {v!r}")
        return v

    @field_validator("quant_mode")
    @classmethod
    def _float_only(cls, v: bool) -> bool:
        if v:
            raise ValueError("quant_mode=True is not supported: I-BERT's integer-only kernels are not implemented "
                             "(load the checkpoint with quant_mode=false to run it in float)")
        return v


@register
class IBert(Roberta):
    model_type = "ibert"
    Config = IBertConfig
    prefix = "ibert."
    tasks = _classes("IBert")
    ignore_patterns = (*Roberta.ignore_patterns, *QUANT_STATE)
    config: IBertConfig
