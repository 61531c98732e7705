"""Tokenizer families by name: ``detect`` picks one for a directory's files and configs.

Each family is one module defining and registering (``@register``) its `Family` class, imported
below; the protocol is documented in `isoform.tokenization.families.base`.
"""

from . import (  # noqa: F401  (each registers its families)
    backend,
    bpe,
    clip,
    fairseq,
    m2m100,
    marian,
    roformer,
    sentencepiece,
    speech_to_text,
    wav2vec2,
    wordpiece,
)
from .base import REGISTRY, Converted, Family, Source, detect, get, register

__all__ = ["REGISTRY", "Converted", "Family", "Source", "detect", "get", "register"]
