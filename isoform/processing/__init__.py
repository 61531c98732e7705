"""Input processors that turn raw media into model inputs: ``ImageProcessor`` (ViT, DeiT, CLIP),
``FeatureExtractor`` (Wav2Vec2, Speech2Text audio) and ``Processor`` (either with the tokenizer)."""

from __future__ import annotations

from .audio import FeatureExtractor
from .image import BatchFeature, ImageProcessor
from .processor import Processor

__all__ = ["BatchFeature", "FeatureExtractor", "ImageProcessor", "Processor"]
