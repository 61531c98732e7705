"""`GenerateOutput`: what ``generate(..., return_dict_in_generate=True)`` returns, as transformers'
``GenerateDecoderOnlyOutput`` / ``GenerateBeamDecoderOnlyOutput`` (and their encoder-decoder twins)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .search import Trace


class GenerateOutput(dict):
    """``sequences`` (int64 [rows, length], what ``generate`` returns by default); ``scores`` / ``logits``:
    tuples with one float32 [rows, vocab] array per step (processed scores, beam search: processed
    log-probs / raw logits), None unless ``output_scores`` / ``output_logits``; beam search adds
    ``sequences_scores`` ([rows], with ``output_scores``) and ``beam_indices`` (int64 [rows, steps]).

    As transformers' ``ModelOutput``: keys are the fields that are set, in transformers' order;
    ``out[0]`` / ``out[:2]`` index `to_tuple`; an unset field reads None as an attribute."""

    FIELDS = ("sequences", "sequences_scores", "scores", "logits", "beam_indices")

    def __init__(self, sequences: np.ndarray, trace: Trace, beam: bool):
        values = {"sequences": sequences, "sequences_scores": trace.sequences_scores if trace.scores is not None else None,
                  "scores": None if trace.scores is None else tuple(trace.scores),
                  "logits": None if trace.logits is None else tuple(trace.logits),
                  "beam_indices": trace.beam_indices if beam else None}
        super().__init__({k: v for k, v in values.items() if v is not None})

    def __getattr__(self, name: str) -> Any:
        if name in self.FIELDS:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__!r} has no field {name!r}; fields: {', '.join(self.FIELDS)}")

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(key) if isinstance(key, str) else self.to_tuple()[key]

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are set, in transformers' order."""
        return tuple(self.values())
