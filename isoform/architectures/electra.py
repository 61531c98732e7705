"""ELECTRA (Clark et al., 2020): BERT's encoder behind smaller embeddings (``embedding_size``,
projected to ``hidden_size`` by ``embeddings_project`` when they differ), no pooler. Tasks as in
transformers: ``pretraining`` is the discriminator (``ElectraForPreTraining``: one replaced-token
logit per token), ``masked-lm`` the generator (``ElectraForMaskedLM``), plus the usual heads; the
sentence classifier uses GELU and multiple choice a configurable "sequence summary"."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from ..ir import Tensor, fn
from ..layers import activation, layer_norm, linear, linear_rules
from ..weights import Rule
from .base import norm_rules, register
from .bert import Bert, BertConfig, first_token_classifier, squeeze_last


class ElectraConfig(BertConfig):
    """`transformers.ElectraConfig` keys isoform reads; all others are kept."""

    vocab_size: PositiveInt = 30522
    embedding_size: PositiveInt = 128
    hidden_size: PositiveInt = 256
    num_attention_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 1024
    summary_type: Literal["first", "last", "mean"] = "first"
    summary_use_proj: bool = True
    summary_activation: str | None = "gelu"


@register
class Electra(Bert):
    model_type = "electra"
    Config = ElectraConfig
    prefix = "electra."
    tasks = {None: "ElectraModel", "pretraining": "ElectraForPreTraining", "masked-lm": "ElectraForMaskedLM",
             "sequence-classification": "ElectraForSequenceClassification",
             "token-classification": "ElectraForTokenClassification",
             "question-answering": "ElectraForQuestionAnswering", "multiple-choice": "ElectraForMultipleChoice"}
    head_patterns = (r"^discriminator_predictions\.", r"^generator_predictions\.", r"^generator_lm_head\.",
                     r"^classifier\.", r"^qa_outputs\.", r"^sequence_summary\.")
    pooler_param = None
    decoder = "generator_lm_head"
    decoder_bias = "generator_lm_head.bias"
    config: ElectraConfig

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_size

    def is_padding_safe(self, task: str | None) -> bool:
        # a "last" or "mean" summary would read the padding appended by bucketing
        return task != "multiple-choice" or self.config.summary_type == "first"

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        c = self.config
        x = self.embeddings(ids, token_types)
        if c.embedding_size != c.hidden_size:
            x = linear(x, "embeddings_project", c.embedding_size, c.hidden_size)
        return {"last_hidden_state": self.encoder(x, mask)}

    def head_pretraining(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, name = self.config, "discriminator_predictions"
        x = activation(c.hidden_act)(linear(states["last_hidden_state"], f"{name}.dense", c.hidden_size, c.hidden_size))
        return {"logits": squeeze_last(linear(x, f"{name}.dense_prediction", c.hidden_size, 1))}

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, name = self.config, "generator_predictions"
        x = fn.gelu(linear(states["last_hidden_state"], f"{name}.dense", c.hidden_size, c.embedding_size))
        return {"logits": self.lm_decoder(layer_norm(x, f"{name}.LayerNorm", c.embedding_size, c.layer_norm_eps))}

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        return {"logits": first_token_classifier(states["last_hidden_state"], "classifier", c.hidden_size,
                                                 c.num_labels, "gelu")}

    def head_multiple_choice(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c, x = self.config, states["last_hidden_state"]
        x = {"first": lambda: x[:, 0], "last": lambda: x[:, -1], "mean": lambda: x.mean(1)}[c.summary_type]()
        if c.summary_use_proj:
            x = linear(x, "sequence_summary.summary", c.hidden_size, self._summary_size)
        if c.summary_activation:
            x = activation(c.summary_activation)(x)
        return {"logits": linear(x, "classifier", self._summary_size, 1)}

    @property
    def _summary_size(self) -> int:
        c = self.config
        return c.num_labels if c.summary_use_proj and c.extra("summary_proj_to_labels") else c.hidden_size

    def backbone_rules(self) -> list[Rule]:
        project = self.config.embedding_size != self.config.hidden_size
        return [*super().backbone_rules(), *(linear_rules("embeddings_project") if project else [])]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "pretraining":
            return linear_rules("discriminator_predictions.dense", "discriminator_predictions.dense_prediction",
                                prefixed=False)
        if task == "masked-lm":
            return [*linear_rules("generator_predictions.dense", prefixed=False),
                    *norm_rules("generator_predictions.LayerNorm", prefixed=False), *self.decoder_rules()]
        if task == "sequence-classification":
            return linear_rules("classifier.dense", "classifier.out_proj", prefixed=False)
        if task == "multiple-choice":
            summary = linear_rules("sequence_summary.summary", prefixed=False) if self.config.summary_use_proj else []
            return [*summary, *linear_rules("classifier", prefixed=False)]
        return super().head_rules(task)
