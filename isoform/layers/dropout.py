"""Dropout where transformers applies it: an IR ``dropout`` node (identity at inference; see
`isoform.backends.base.TRAINING_ONLY`), or nothing at all for a rate of 0."""

from __future__ import annotations

from ..ir import Tensor, fn


def dropout(x: Tensor, rate: float | None) -> Tensor:
    """``x`` through dropout with probability ``rate`` (None or 0: ``x`` itself, no node)."""
    return fn.dropout(x, rate=float(rate)) if rate else x
