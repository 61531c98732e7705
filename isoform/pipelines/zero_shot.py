"""Zero-shot pipelines: text classification by an NLI model's entailment of one hypothesis per candidate
label, and image classification by CLIP's image-text similarity."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from .base import Pipeline, _softmax
from .vision import is_image, load_images


def _labels(candidate_labels: Any, hypothesis_template: str) -> list[str]:
    labels = candidate_labels
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    if not labels:
        raise InputError("zero-shot classification needs candidate_labels (a list, or a comma-separated str)")
    if hypothesis_template.format(labels[0]) == hypothesis_template:
        raise InputError(f"hypothesis_template {hypothesis_template!r} has no {{}} for the label")
    return list(labels)


class _CandidateLabelsPipeline(Pipeline):
    """A pipeline whose one positional argument after the inputs is ``candidate_labels``, as transformers'."""

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and "candidate_labels" not in kwargs:
            kwargs["candidate_labels"] = args[0]
        elif args:
            raise InputError(f"{self.task}: unexpected arguments {args!r}")
        return super().__call__(inputs, **kwargs)


class ZeroShotClassificationPipeline(_CandidateLabelsPipeline):
    """transformers' zero-shot-classification: each text is the premise of one NLI pair per candidate label
    (``hypothesis_template``, default ``"This example is {}."``); the scores are the entailment logits
    softmaxed over the labels, or with ``multi_label=True`` (or one label) each label's entailment vs
    contradiction. The entailment class is the first of ``label2id`` whose name starts with "entail".
    Per text ``{"sequence", "labels", "scores"}``, best first."""

    model_task = "sequence-classification"

    def entailment_id(self) -> int:
        """The entailment class: of ``label2id`` (else ``id2label``), the first label starting with
        "entail" (any case); -1 (the last) when none does."""
        config = self.model.config
        label2id = config.extra("label2id") or {v: int(k) for k, v in (config.id2label or {}).items()}
        return next((int(i) for label, i in label2id.items() if label.lower().startswith("entail")), -1)

    def _run(self, items: list[str], candidate_labels: Any = None, hypothesis_template: str = "This example is {}.",
             multi_label: bool = False) -> list[dict[str, Any]]:
        if not all(isinstance(t, str) for t in items):
            raise InputError("zero-shot-classification takes texts (str) or a list of texts")
        labels = _labels(candidate_labels, hypothesis_template)
        hypotheses = [hypothesis_template.format(label) for label in labels]
        premises = [t for t in items for _ in labels]
        enc = self._encode(premises, hypotheses * len(items), truncation="only_first")
        logits = self._forward(enc)["logits"].astype(np.float32).reshape(len(items), len(labels), -1)
        entail = self.entailment_id()
        if logits.shape[-1] < 2:
            raise ConfigError("zero-shot-classification needs an NLI model (at least entailment and contradiction)")
        if multi_label or len(labels) == 1:
            scores = _softmax(logits[..., [-1 if entail == 0 else 0, entail]])[..., 1]
        else:
            scores = _softmax(logits[..., entail])
        results = []
        for text, row in zip(items, scores):
            order = np.argsort(row, kind="stable")[::-1]
            results.append({"sequence": text, "labels": [labels[i] for i in order],
                            "scores": [float(row[i]) for i in order]})
        return results


class ZeroShotImageClassificationPipeline(_CandidateLabelsPipeline):
    """transformers' zero-shot-image-classification on CLIP: per image ``[{"score", "label"}, ...]`` over
    ``candidate_labels`` (as ``hypothesis_template``, default ``"This is a photo of {}."``), the softmax
    of ``logits_per_image``, best first."""

    model_task = None  # the bare CLIP model: logits_per_image
    preprocessor = "processor"

    def _is_single(self, inputs: Any) -> bool:
        return is_image(inputs)

    def _run(self, items: list[Any], candidate_labels: Any = None, hypothesis_template: str = "This is a photo of {}.",
             tokenizer_kwargs: dict[str, Any] | None = None) -> list[list[dict[str, Any]]]:
        labels = _labels(candidate_labels, hypothesis_template)
        texts = [hypothesis_template.format(label) for label in labels]
        inputs = self.processor(text=texts, images=load_images(items), return_tensors="np",
                                **{"padding": True, **(tokenizer_kwargs or {})})
        logits = self._forward(dict(inputs))["logits_per_image"].astype(np.float32)
        results = []
        for row in _softmax(logits):
            ranked = sorted(zip(row.tolist(), labels), key=lambda x: -x[0])
            results.append([{"score": score, "label": label} for score, label in ranked])
        return results
