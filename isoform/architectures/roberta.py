"""RoBERTa (Liu et al., 2019) and its re-trainings XLM-RoBERTa and CamemBERT: BERT's encoder with
fairseq position ids - padding tokens keep position ``padding_idx``, real tokens count from
``padding_idx + 1`` (``cumsum`` of the non-padding mask of ``input_ids``) - an ``lm_head`` with
its own GELU and a two-layer first-token classifier."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from ..ir import Tensor, fn
from ..layers import layer_norm, linear, linear_rules
from ..weights import Rule
from .base import norm_rules, register
from .bert import Bert, BertConfig, first_token_classifier


class RobertaConfig(BertConfig):
    """`transformers.RobertaConfig`: BERT's keys with RoBERTa's defaults."""

    vocab_size: PositiveInt = 50265
    max_position_embeddings: PositiveInt = 514
    type_vocab_size: NonNegativeInt = 1
    layer_norm_eps: PositiveFloat = 1e-5
    pad_token_id: NonNegativeInt = 1

    @model_validator(mode="after")
    def _positions(self) -> RobertaConfig:
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise ValueError(f"max_position_embeddings ({self.max_position_embeddings}) must exceed "
                             f"pad_token_id + 1 ({self.pad_token_id + 1}): positions start after the padding index")
        return self


def _classes(name: str) -> dict[str | None, str]:
    return {None: f"{name}Model", "masked-lm": f"{name}ForMaskedLM",
            "sequence-classification": f"{name}ForSequenceClassification",
            "token-classification": f"{name}ForTokenClassification",
            "question-answering": f"{name}ForQuestionAnswering", "multiple-choice": f"{name}ForMultipleChoice"}


@register
class Roberta(Bert):
    model_type = "roberta"
    Config = RobertaConfig
    prefix = "roberta."
    tasks = _classes("Roberta")
    head_patterns = (r"^lm_head\.", r"^classifier\.", r"^qa_outputs\.", r"^pooler\.")
    decoder = "lm_head.decoder"
    decoder_bias = "lm_head.bias"
    config: RobertaConfig

    def positions(self, ids: Tensor) -> Tensor:
        pad = self.config.pad_token_id
        real = fn.ne(ids, ids.builder.constant(pad, ids.dtype)).cast(ids.dtype)
        return fn.cumsum(real, axis=1) * real + pad

    @property
    def max_length(self) -> int:
        return self.config.max_position_embeddings - self.config.pad_token_id - 1

    def uses_pooler(self, task: str | None) -> bool:
        return task in (None, "multiple-choice")

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        dim = self.config.hidden_size
        x = fn.gelu(linear(states["last_hidden_state"], "lm_head.dense", dim, dim))  # GELU whatever hidden_act says
        return {"logits": self.lm_decoder(layer_norm(x, "lm_head.layer_norm", dim, self.config.layer_norm_eps))}

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        return {"logits": first_token_classifier(states["last_hidden_state"], "classifier", c.hidden_size,
                                                 c.num_labels, "tanh")}

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm":
            return [*linear_rules("lm_head.dense", prefixed=False), *norm_rules("lm_head.layer_norm", prefixed=False),
                    *self.decoder_rules()]
        if task == "sequence-classification":
            return linear_rules("classifier.dense", "classifier.out_proj", prefixed=False)
        return super().head_rules(task)


class XLMRobertaConfig(RobertaConfig):
    vocab_size: PositiveInt = 250002


@register
class XLMRoberta(Roberta):
    model_type = "xlm-roberta"
    Config = XLMRobertaConfig
    tasks = _classes("XLMRoberta")


class CamembertConfig(RobertaConfig):
    vocab_size: PositiveInt = 32005


@register
class Camembert(Roberta):
    model_type = "camembert"
    Config = CamembertConfig
    tasks = _classes("Camembert")
