"""``isoform.Tokenizer``: `isoform.tokenization.Tokenizer` loaded by name (alias, hub id or directory)."""

from __future__ import annotations

import os

from . import hub, tokenization


class Tokenizer(tokenization.Tokenizer):
    __doc__ = tokenization.Tokenizer.__doc__

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
    ) -> Tokenizer:
        """Load from a local directory, an isoform alias or a hub id (see ``isoform.hub.resolve``).

        ``src_lang``/``tgt_lang`` override the configured languages of mBART / M2M100 tokenizers.
        """
        directory = hub.resolve(name_or_path, revision=revision)
        return super().load(directory, src_lang=src_lang, tgt_lang=tgt_lang)
