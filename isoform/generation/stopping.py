"""When a sequence is finished: `Stopping` = max length, eos tokens and stop strings (transformers'
``MaxLengthCriteria``, ``EosTokenCriteria`` and ``StopStringCriteria``).

A stop string stops a row when it occurs in the decoded text and ends inside the newest token (as
transformers: text generated earlier never stops a row later). Tokens are compared as the bytes
they decode to: byte-level BPE tokens through the byte alphabet, ``<0xNN>`` byte-fallback tokens as
their byte, others by decoding them after a fixed prefix (transformers' ``clean_tokenizer_vocab``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from ..errors import InputError

PREFIX = "abcdef"  # decoded before each token so that decoders which strip a leading space keep it


class StopStrings:
    """Match ``stops`` at the end of token sequences of ``tokenizer`` (an isoform or transformers
    tokenizer with a ``tokenizers`` backend)."""

    def __init__(self, stops: Sequence[str], tokenizer: Any):
        candidates = (getattr(tokenizer, name, None) for name in ("backend", "backend_tokenizer"))
        backend = next((b for b in candidates if hasattr(b, "id_to_token")), None)
        if backend is None:
            raise InputError("stop_strings need the model's tokenizer: pass tokenizer=isoform.Tokenizer.load(...)")
        self.backend = backend
        self.targets = [s.encode("utf-8") for s in stops]
        self.window = max(len(t) for t in self.targets)  # tokens looked at, as transformers
        self.mode = _decoder_mode(backend)
        self.prefix_ids = backend.encode(PREFIX, add_special_tokens=False).ids
        self._bytes: dict[int, bytes] = {}

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes ``token_id`` adds to the decoded text."""
        if token_id not in self._bytes:
            token = self.backend.id_to_token(token_id) if 0 <= token_id < 2**32 else None
            if token is None:  # not a token (a pad outside the vocabulary filling a finished row): no text
                out = b""
            elif self.mode == "byte_level" and all(c in _byte_decoder() for c in token):
                out = bytes(_byte_decoder()[c] for c in token)
            elif self.mode == "byte_fallback" and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):
                out = bytes([int(token[3:5], 16)])
            else:
                text = self.backend.decode([*self.prefix_ids, token_id], skip_special_tokens=False)
                out = text[text.find(PREFIX) + len(PREFIX):].encode("utf-8") if PREFIX in text else b""
            self._bytes[token_id] = out
        return self._bytes[token_id]

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """[rows, length] -> [rows] bool: does a stop string end inside the last token?"""
        hits = np.zeros(ids.shape[0], bool)
        for row, tokens in enumerate(ids[:, -self.window:].tolist()):
            pieces = [self.token_bytes(t) for t in tokens]
            if not pieces or not pieces[-1]:
                continue
            text, last = b"".join(pieces), len(pieces[-1])
            hits[row] = any(text.find(t, max(0, len(text) - last - len(t) + 1)) >= 0 for t in self.targets)
        return hits


class Stopping:
    """``stop(ids) -> [rows] bool``: row reached ``max_length``, ended with an eos token, or a stop string."""

    def __init__(self, max_length: int, eos: Sequence[int], strings: StopStrings | None = None):
        self.max_length = max_length
        self.eos = np.asarray(list(eos), np.int64)
        self.strings = strings

    @property
    def has_eos(self) -> bool:
        return self.eos.size > 0

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        done = np.full(ids.shape[0], ids.shape[1] >= self.max_length)
        if self.has_eos:
            done |= np.isin(ids[:, -1], self.eos)
        if self.strings is not None:
            done |= self.strings(ids)
        return done


def _decoder_mode(backend: Any) -> str | None:
    """transformers' ``_get_stop_string_matching_mode``: how tokens map to bytes."""
    decoder = getattr(backend, "decoder", None)
    if decoder is None:
        return None
    if type(decoder).__name__ == "ByteLevel":
        return "byte_level"
    state = repr(getattr(decoder, "__getstate__", lambda: b"")())
    if "ByteFallback" in state:
        return "byte_fallback"
    return "byte_level" if "ByteLevel" in state else None


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable character alphabet, inverted (character -> byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars
