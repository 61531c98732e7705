"""``BatchEncoding``: the dict a tokenizer call returns, and its conversion to framework tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from isoform.errors import TokenizerError

TENSOR_TYPES = ("np", "pt", "jax", "tf")


class BatchEncoding(dict):
    """A ``dict`` of model inputs (``input_ids``, ``attention_mask``, ...) with attribute access.

    ``encodings`` keeps the ``tokenizers.Encoding`` objects (one per row) for ``tokens(i)`` and
    ``word_ids(i)``; it is empty when the encodings were not kept.
    """

    def __init__(self, data: dict[str, Any] | None = None, encodings: list | None = None) -> None:
        super().__init__(data or {})
        self.encodings = encodings or []

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def tokens(self, index: int = 0) -> list[str]:
        """Token strings of row ``index``."""
        return self.encodings[index].tokens

    def word_ids(self, index: int = 0) -> list[int | None]:
        """Word index of each token of row ``index`` (``None`` for special tokens)."""
        return self.encodings[index].word_ids

    def sequence_ids(self, index: int = 0) -> list[int | None]:
        """Which input sequence (0, 1 or ``None`` for special tokens) each token of row ``index`` came from."""
        return self.encodings[index].sequence_ids


def to_tensors(data: dict[str, Any], return_tensors: str) -> dict[str, Any]:
    """Convert lists of rows to ``return_tensors`` arrays; the framework is imported only here."""
    if return_tensors not in TENSOR_TYPES:
        raise TokenizerError(
            f"return_tensors must be one of {', '.join(TENSOR_TYPES)} or None, got {return_tensors!r}"
        )
    arrays = {}
    for key, rows in data.items():
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise TokenizerError(
                f"cannot make a tensor of {key!r}: rows have different lengths {sorted(lengths)}; "
                "pass padding=True (or padding='max_length') with return_tensors"
            )
        arrays[key] = np.asarray(rows, dtype=np.int64)
        if key == "offset_mapping" and arrays[key].size == 0:
            arrays[key] = arrays[key].reshape(len(rows), 0, 2)
    if return_tensors == "np":
        return arrays
    if return_tensors == "pt":
        import torch

        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    if return_tensors == "jax":
        import jax.numpy as jnp

        return {k: jnp.asarray(v) for k, v in arrays.items()}
    import tensorflow as tf

    return {k: tf.constant(v) for k, v in arrays.items()}
