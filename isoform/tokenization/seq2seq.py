"""Seq2seq additions to ``Tokenizer``: ``text_target`` / ``labels`` and mBART / M2M100 languages."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from isoform.errors import TokenizerError

if TYPE_CHECKING:
    from tokenizers import Tokenizer as Backend

    from isoform.tokenization.batch import BatchEncoding
    from isoform.tokenization.families import Family
    from isoform.tokenization.languages import Languages
    from isoform.tokenization.loading import TokenizerSpec


class Seq2SeqMixin:
    """``Tokenizer`` methods for encoder-decoder models (targets, language codes)."""

    backend: Backend
    _spec: TokenizerSpec
    _family: Family
    _lock: contextlib.AbstractContextManager[Any]  # a threading.RLock
    _prepared: dict[tuple, tuple]
    _encode: Callable[..., BatchEncoding]

    def __call__(
        self,
        text: str | Sequence[str] | Sequence[tuple[str, str]] | None = None,
        text_pair: str | Sequence[str] | None = None,
        *,
        text_target: str | Sequence[str] | None = None,
        text_pair_target: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Encode one text, a batch, or text pairs; arguments and outputs follow transformers.

        With ``text_target`` the targets are encoded as ``as_target()`` does and returned as ``labels``
        (or alone, when ``text`` is None); the other keyword arguments apply to both.
        """
        if text_target is None:
            if text is None:
                raise TokenizerError("pass text=, text_target= or both")
            return self._encode(text, text_pair, **kwargs)
        with self.as_target():
            targets = self._encode(text_target, text_pair_target, **kwargs)
        if text is None:
            return targets
        inputs = self._encode(text, text_pair, **kwargs)
        inputs["labels"] = targets["input_ids"]
        return inputs

    @property
    def src_lang(self) -> str | None:
        """Source language code: frames ``input_ids`` (``A </s> en_XX`` / ``__en__ A </s>``)."""
        return None if self._family.languages is None else self._family.languages.src_lang

    @src_lang.setter
    def src_lang(self, code: str) -> None:
        self._languages().token(code)
        with self._lock:
            self._languages().src_lang = code
            self._frame(code)

    @property
    def tgt_lang(self) -> str | None:
        """Target language code: frames ``labels``; defaults to ``src_lang``."""
        return None if self._family.languages is None else self._family.languages.tgt_lang

    @tgt_lang.setter
    def tgt_lang(self, code: str) -> None:
        self._languages().token(code)
        with self._lock:
            self._languages().tgt_lang = code

    @property
    def lang_code_to_id(self) -> dict[str, int]:
        """``{"en_XX": 250004, ...}`` / ``{"en": 128022, ...}``: ids for ``forced_bos_token_id``."""
        return {code: self.get_lang_id(code) for code in self._languages().tokens}

    def get_lang_id(self, code: str) -> int:
        """Id of language ``code`` (``"de"``, ``"__de__"`` or ``"de_DE"``); unknown codes list the valid ones."""
        found = self.backend.token_to_id(self._languages().token(code))
        if found is None:
            raise TokenizerError(f"language token {self._languages().token(code)!r} is not in the vocabulary")
        return found

    def _languages(self) -> Languages:
        if self._family.languages is None:
            raise TokenizerError(f"this {self._family.name} tokenizer has no language codes")
        return self._family.languages

    def _frame(self, code: str) -> None:
        self._languages().frame(self.backend, code, self._spec.special.get("eos_token", "</s>"))
        self._prepared = {}  # checked options count the post-processor's special tokens

    @contextlib.contextmanager
    def as_target(self) -> Iterator[Seq2SeqMixin]:
        """Within the block, encode target text (``labels``): framed with ``tgt_lang`` where there is
        one, with the family's target pipeline where it has one (Marian). Other threads using this
        tokenizer wait until the block ends."""
        languages = self._family.languages
        with self._lock, self._family.target(self):
            if languages is None:
                yield self
                return
            self._frame(languages.tgt_lang or languages.src_lang)
            try:
                yield self
            finally:
                self._frame(languages.src_lang)
