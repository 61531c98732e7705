"""`TextStreamer`: a ``streamer`` for ``Model.generate`` that writes the decoded text of one row to a
file (stdout by default) as tokens arrive."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np


class TextStreamer:
    """Decode ``prompt + new tokens`` of row ``row`` after every step and write what is new since the
    last write. Text that ends in an incomplete UTF-8 character (``\\ufffd``) waits for the next token.
    ``print_prompt`` writes the decoded prompt first."""

    def __init__(self, tokenizer: Any, prompt: Sequence[int], file: TextIO | None = None, *, row: int = 0,
                 skip_special_tokens: bool = True, print_prompt: bool = True):
        self.tokenizer, self.row, self.skip = tokenizer, row, skip_special_tokens
        self.file = file if file is not None else sys.stdout
        self.ids = [int(i) for i in prompt]
        self.written = len(self._text()) if not print_prompt else 0
        if print_prompt:
            self._flush()

    def __call__(self, tokens: np.ndarray) -> None:
        self.ids.append(int(tokens[self.row]))
        self._flush()

    def end(self) -> None:
        self._flush(final=True)
        self.file.write("\n")
        self.file.flush()

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=self.skip)

    def _flush(self, final: bool = False) -> None:
        text = self._text()
        if text.endswith("\ufffd") and not final:
            return
        self.file.write(text[self.written:])
        self.file.flush()
        self.written = max(self.written, len(text))
