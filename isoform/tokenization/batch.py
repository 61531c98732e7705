"""A tokenizer call's inputs and outputs: checking the texts, ``BatchEncoding`` and its tensors."""

from __future__ import annotations

import operator
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

    def convert_to_tensors(self, tensor_type: str | None = None, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Make every value a ``tensor_type`` (``"np"``, ``"pt"``, ``"jax"``, ``"tf"``) tensor, in place (None:
        leave them); ``prepend_batch_axis`` makes one unbatched row a batch of one. Returns ``self``."""
        if tensor_type is None:
            return self
        rows = {k: v.tolist() if hasattr(v, "tolist") else np.asarray(v).tolist() for k, v in self.items()}
        self.update(to_tensors({k: [v] for k, v in rows.items()} if prepend_batch_axis else rows, tensor_type))
        return self

    def to(self, device: Any, *, non_blocking: bool = False) -> BatchEncoding:
        """Move the torch tensors (``return_tensors="pt"``) to ``device`` (``"cuda"``, an index, a
        ``torch.device``), in place, as transformers; other values stay as they are. Returns ``self``."""
        if not isinstance(device, str | int) and type(device).__name__ != "device":
            raise TokenizerError(f"BatchEncoding.to takes a torch device (a str, int or torch.device), got "
                                 f"{type(device).__name__}")
        for key, value in self.items():
            if type(value).__module__.startswith("torch"):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self


def to_tensors(data: dict[str, Any], return_tensors: str) -> dict[str, Any]:
    """Convert lists of rows to ``return_tensors`` arrays; the framework is imported only here."""
    if return_tensors not in TENSOR_TYPES:
        raise TokenizerError(
            f"return_tensors must be one of {', '.join(TENSOR_TYPES)} or None, got {return_tensors!r}"
        )
    arrays = {}
    for key, rows in data.items():
        if all(isinstance(r, int) for r in rows):  # one number a row: length, overflow_to_sample_mapping
            arrays[key] = np.asarray(rows, dtype=np.int64)
            continue
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
    from ..environment import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    return {k: tf.constant(v) for k, v in arrays.items()}


def ints(ids: Any) -> list[int]:
    """Token ids (a list, NumPy array or framework tensor) as a list of ints."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    if isinstance(ids, str | bytes | dict) or not hasattr(ids, "__iter__"):
        raise TokenizerError(f"expected a sequence of token ids, got {type(ids).__name__}")
    out = []
    for i in ids:
        if isinstance(i, float) and i.is_integer():
            out.append(int(i))
        elif hasattr(i, "__index__"):
            out.append(operator.index(i))
        else:
            raise TokenizerError(f"expected a sequence of token ids (ints), got {type(i).__name__} {i!r:.40}")
    return out


def check_text(text: Any, where: str = "text") -> Any:
    """``text`` if it is a str (or None); else a TokenizerError naming ``where``."""
    if text is None or isinstance(text, str):
        return text
    raise TokenizerError(f"{where} must be a str, got {type(text).__name__}: {text!r:.80}")


def batch_inputs(text: Any, text_pair: Any, words: bool) -> tuple[bool, list]:
    """Normalise the call's inputs to (was it a batch, list of str | (str, str) | list[str])."""

    def is_words(x: Any) -> bool:
        return isinstance(x, list | tuple) and all(isinstance(w, str) for w in x)

    if words:
        batched = isinstance(text, list | tuple) and bool(text) and not isinstance(text[0], str)
        items = list(text) if batched else [text]
        if text_pair is not None and batched and not isinstance(text_pair, list | tuple):
            raise TokenizerError(f"text_pair must be a list with one entry per text, got {type(text_pair).__name__}")
        pairs = (list(text_pair) if batched else [text_pair]) if text_pair is not None else None
        if pairs is not None and len(pairs) != len(items):
            raise TokenizerError("text_pair must be a list with one entry per text")
        for i, x in enumerate(items + (pairs or [])):
            if not is_words(x):
                raise TokenizerError(
                    f"with is_split_into_words=True, input {i} must be a list of str, got {x!r:.80}"
                )
        return batched, items if pairs is None else list(zip(items, pairs))
    if isinstance(text, str):
        return False, [text if text_pair is None else (text, check_text(text_pair, "text_pair"))]
    if not isinstance(text, list | tuple):
        raise TokenizerError(
            f"text must be a str, a list of str or a list of (str, str) pairs, got {type(text).__name__}"
        )
    items = list(text)
    if text_pair is not None:
        if not isinstance(text_pair, list | tuple) or len(text_pair) != len(items):
            raise TokenizerError("text_pair must be a list with one entry per text")
        items = list(zip(items, text_pair))
    out = []
    for i, item in enumerate(items):
        if isinstance(item, tuple | list):
            if len(item) != 2:
                raise TokenizerError(f"input {i}: a pair must have two texts, got {len(item)}")
            out.append((check_text(item[0], f"input {i}"), check_text(item[1], f"input {i} (pair)")))
        else:
            out.append(check_text(item, f"input {i}"))
    if any(isinstance(x, tuple) for x in out) and not all(isinstance(x, tuple) for x in out):
        raise TokenizerError("a batch must be all single texts or all pairs")
    return True, out
