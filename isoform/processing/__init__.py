"""Input processors that turn raw media into model inputs: ``ImageProcessor`` (ViT, DeiT, CLIP)."""

from __future__ import annotations

from .image import BatchFeature, ImageProcessor

__all__ = ["BatchFeature", "ImageProcessor"]
