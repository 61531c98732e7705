"""DistilBERT (Sanh et al., 2019): BERT distilled to half the layers, without token types or
pooler; its own module names (``transformer.layer.{i}.attention.q_lin``, ``ffn.lin1``, ...), and a
ReLU ``pre_classifier`` on the first token for sentence-level heads."""

from __future__ import annotations

from pydantic import PositiveInt, field_validator, model_validator

from ..ir import Tensor
from ..layers import (
    activation,
    attention_mask,
    embedding,
    feed_forward,
    layer_norm,
    linear,
    linear_rules,
    multi_head_attention,
)
from ..weights import Rule
from .base import ArchConfig, known_activation, norm_rules, register, same
from .bert import Bert

EPS = 1e-12  # fixed in transformers' DistilBERT, not a config key


class DistilBertConfig(ArchConfig):
    """`transformers.DistilBertConfig` (``dim``, ``n_layers``, ``n_heads``, ``hidden_dim``, ``activation``)."""

    vocab_size: PositiveInt = 30522
    max_position_embeddings: PositiveInt = 512
    n_layers: PositiveInt = 6
    n_heads: PositiveInt = 12
    dim: PositiveInt = 768
    hidden_dim: PositiveInt = 3072
    activation: str = "gelu"
    pad_token_id: int | None = 0

    @property
    def hidden_size(self) -> int:
        return self.dim

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, v: str) -> str:
        return known_activation(v)

    @model_validator(mode="after")
    def _heads_divide(self) -> DistilBertConfig:
        self.require_multiple("dim", "n_heads")
        return self


@register
class DistilBert(Bert):
    model_type = "distilbert"
    Config = DistilBertConfig
    prefix = "distilbert."
    tasks = {None: "DistilBertModel", "masked-lm": "DistilBertForMaskedLM",
             "sequence-classification": "DistilBertForSequenceClassification",
             "token-classification": "DistilBertForTokenClassification",
             "question-answering": "DistilBertForQuestionAnswering",
             "multiple-choice": "DistilBertForMultipleChoice"}
    head_patterns = (r"^vocab_(transform|layer_norm|projector)\.", r"^pre_classifier\.", r"^classifier\.",
                     r"^qa_outputs\.")
    pooler_param = None
    decoder = "vocab_projector"
    decoder_bias = "vocab_projector.bias"
    config: DistilBertConfig

    def backbone(self, ids: Tensor, mask: Tensor, token_types: Tensor | None, *, pooler: bool) -> dict[str, Tensor]:
        c = self.config
        x = ids.builder.tap("inputs_embeds", embedding(ids, "embeddings.word_embeddings", c.vocab_size, c.dim))
        x = x + embedding(self.positions(ids), "embeddings.position_embeddings", c.max_position_embeddings, c.dim)
        x, m = layer_norm(x, "embeddings.LayerNorm", c.dim, EPS), attention_mask(mask)
        for i in range(c.n_layers):
            name = f"transformer.layer.{i}"
            x = x.builder.tap("hidden_states", x)
            a = multi_head_attention(x, f"{name}.attention", c.dim, c.n_heads, m, names=("q_lin", "k_lin", "v_lin"))
            x = layer_norm(linear(a, f"{name}.attention.out_lin", c.dim, c.dim) + x, f"{name}.sa_layer_norm", c.dim, EPS)
            h = feed_forward(x, f"{name}.ffn.lin1", f"{name}.ffn.lin2", c.dim, c.hidden_dim, c.activation)
            x = layer_norm(h + x, f"{name}.output_layer_norm", c.dim, EPS)
        return {"last_hidden_state": x.builder.tap("hidden_states", x)}

    def _pre_classified(self, states: dict[str, Tensor]) -> Tensor:
        dim = self.config.dim
        return activation("relu")(linear(states["last_hidden_state"][:, 0], "pre_classifier", dim, dim))

    def head_masked_lm(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        c = self.config
        x = activation(c.activation)(linear(states["last_hidden_state"], "vocab_transform", c.dim, c.dim))
        return {"logits": self.lm_decoder(layer_norm(x, "vocab_layer_norm", c.dim, EPS))}

    def head_sequence_classification(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": linear(self._pre_classified(states), "classifier", self.config.dim, self.config.num_labels)}

    def head_multiple_choice(self, states: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"logits": linear(self._pre_classified(states), "classifier", self.config.dim, 1)}

    def backbone_rules(self) -> list[Rule]:
        layer = "transformer.layer.{i}"
        return [*same("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"),
                *norm_rules("embeddings.LayerNorm", f"{layer}.sa_layer_norm", f"{layer}.output_layer_norm"),
                *linear_rules(*(f"{layer}.attention.{n}" for n in ("q_lin", "k_lin", "v_lin", "out_lin")),
                              f"{layer}.ffn.lin1", f"{layer}.ffn.lin2")]

    def head_rules(self, task: str | None) -> list[Rule]:
        if task == "masked-lm":
            return [*linear_rules("vocab_transform", prefixed=False), *norm_rules("vocab_layer_norm", prefixed=False),
                    *self.decoder_rules()]
        if task in ("sequence-classification", "multiple-choice"):
            return linear_rules("pre_classifier", "classifier", prefixed=False)
        return super().head_rules(task)



