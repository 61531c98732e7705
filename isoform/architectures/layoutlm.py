"""LayoutLM (Xu et al., 2020): BERT whose embeddings also add 2-D positions from the input ``bbox``
[batch, seq, 4] of (x0, y0, x1, y1) in ``0 .. max_2d_position_embeddings - 1``: x/y tables of both
corners plus height and width tables, before the embedding LayerNorm. ``bbox`` defaults to zeros
(as transformers); every head builds the base model with its pooler, which only the sequence
classifier reads."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import PositiveInt

from ..errors import InputError
from ..ir import Tensor
from ..layers import embedding
from ..weights import Rule
from .base import register, same
from .bert import Bert, BertConfig
from .inputs import Inputs, InputSpec


class LayoutLMConfig(BertConfig):
    """`transformers.LayoutLMConfig`: BERT's keys plus the 2-D position table size."""

    max_2d_position_embeddings: PositiveInt = 1024


@register
class LayoutLM(Bert):
    model_type = "layoutlm"
    Config = LayoutLMConfig
    prefix = "layoutlm."
    tasks = {None: "LayoutLMModel", "masked-lm": "LayoutLMForMaskedLM",
             "sequence-classification": "LayoutLMForSequenceClassification",
             "token-classification": "LayoutLMForTokenClassification",
             "question-answering": "LayoutLMForQuestionAnswering"}
    config: LayoutLMConfig

    def input_specs(self, task: str | None) -> Inputs:
        specs = super().input_specs(task)
        n = self.config.max_2d_position_embeddings
        bbox = InputSpec("bbox", ("batch", "seq", 4), high=n, bound="max_2d_position_embeddings",
                         default=lambda arrays: np.zeros((*arrays["input_ids"].shape, 4), np.int64))
        return Inputs([*specs.specs, bbox], limits=specs.limits)

    def check_inputs(self, inputs: Mapping[str, np.ndarray], task: str | None) -> None:
        box = inputs.get("bbox")
        if box is None:
            return
        bad = np.argwhere((box[..., 2] < box[..., 0]) | (box[..., 3] < box[..., 1]))
        if len(bad):
            at = tuple(int(i) for i in bad[0])
            raise InputError(f"bbox holds {box[at].tolist()} at index {at}: boxes are (x0, y0, x1, y1) with "
                             "x0 <= x1 and y0 <= y1")

    def embedding_sum(self, ids: Tensor, token_types: Tensor | None, bbox: Tensor) -> Tensor:
        c = self.config
        x0, y0, x1, y1 = (bbox[..., i] for i in range(4))

        def table(axis: str, at: Tensor) -> Tensor:
            return embedding(at, f"embeddings.{axis}_position_embeddings", c.max_2d_position_embeddings, c.hidden_size)

        boxes = table("x", x0) + table("y", y0) + table("x", x1) + table("y", y1) + table("h", y1 - y0) + table("w", x1 - x0)
        return super().embedding_sum(ids, token_types) + boxes

    def uses_pooler(self, task: str | None) -> bool:
        return task in (None, "sequence-classification")

    def embedding_rules(self) -> list[Rule]:
        return [*super().embedding_rules(), *same(*(f"embeddings.{a}_position_embeddings.weight" for a in "xyhw"))]
