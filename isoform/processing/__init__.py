"""Input processors that turn raw media into model inputs: ``ImageProcessor`` (ViT, DeiT, CLIP) and
``FeatureExtractor`` (Wav2Vec2, Speech2Text audio)."""

from __future__ import annotations

from .audio import FeatureExtractor
from .image import BatchFeature, ImageProcessor

__all__ = ["BatchFeature", "FeatureExtractor", "ImageProcessor"]
