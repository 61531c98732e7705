"""Image pipelines: image-classification, and the image loading shared with zero-shot image classification."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InputError
from .base import Pipeline, classification_scores, label_names


def is_image(x: Any) -> bool:
    """Whether ``x`` is one image (a PIL image, an array, or a file path), not a list of them."""
    from PIL import Image

    return isinstance(x, Image.Image | np.ndarray | str | os.PathLike)


def load_images(items: list[Any]) -> list[Any]:
    """PIL images or arrays as given, file paths opened as RGB images."""
    from PIL import Image

    out = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            try:
                item = Image.open(item).convert("RGB")
            except OSError as e:
                raise InputError(f"cannot read image {item}: {e}") from None
        elif not isinstance(item, Image.Image | np.ndarray):
            raise InputError(f"expected an image (PIL image, array or file path), got {type(item).__name__}")
        out.append(item)
    return out


class ImageClassificationPipeline(Pipeline):
    """transformers' image-classification: per image the ``top_k`` (default 5, at most the number of
    labels) ``{"label", "score"}``, scored with ``function_to_apply`` as text-classification."""

    model_task = "image-classification"
    preprocessor = "image"

    def _is_single(self, inputs: Any) -> bool:
        return is_image(inputs)

    def _run(self, items: list[Any], top_k: int = 5, function_to_apply: Any = None) -> list[list[dict[str, Any]]]:
        pixels = self.processor(load_images(items), return_tensors="np")
        logits = self._forward(dict(pixels))["logits"].astype(np.float32)
        scores = classification_scores(logits, self.model.config, function_to_apply)
        names = label_names(self.model.config, logits.shape[-1])
        k = min(top_k, logits.shape[-1])
        return [[{"label": names[i], "score": float(row[i])} for i in np.argsort(-row, kind="stable")[:k]]
                for row in scores]
