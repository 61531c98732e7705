"""RoFormer's WordPiece (``RoFormerTokenizer``): BERT's ``vocab.txt``, template and decoder, with text
cut into Chinese words by jieba (``rjieba``, the ``isoform[roformer]`` extra) instead of
``BertPreTokenizer``, so words of the vocabulary such as ``北京`` stay whole.

The jieba step is Python inside the Rust pipeline (``PreTokenizer.custom``), which tokenizer.json
cannot hold: as transformers, a saved tokenizer.json carries ``BertPreTokenizer`` in its place and
``tokenizer_class: RoFormerTokenizer`` puts jieba back on load. Such a tokenizer does not pickle.

transformers 5 quirk, not copied: loading a bare ``vocab.txt`` it hands jieba the file's *path* as
the vocabulary, so its "is this word in the vocabulary" test is a substring test on that path and
vocabulary words of several CJK characters come out character by character. isoform tests words
against the vocabulary, as transformers does for a tokenizer.json (and as RoFormer intends).
"""

from __future__ import annotations

import pathlib
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from tokenizers import NormalizedString, PreTokenizedString, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError
from isoform.tokenization.families.base import WITHOUT_TYPES, Converted, Source, register
from isoform.tokenization.families.wordpiece import WordPiece, wordpiece
from isoform.tokenization.files import flag_option, read_wordpiece_vocab
from isoform.tokenization.templates import BERT_SPECIAL, CLS_SEP

if TYPE_CHECKING:
    from isoform.tokenization.tokenizer import Tokenizer


class JiebaPreTokenizer:
    """transformers' ``JiebaPreTokenizer``: each pre-token is cut at jieba's words (no HMM); a word
    of ``vocab`` stays one piece, any other is split at whitespace and around CJK characters (the
    pieces taken back to back from the word's start, as there)."""

    def __init__(self, vocab: Collection[str]) -> None:
        try:
            import rjieba
        except ImportError:
            raise TokenizerError(
                "RoFormer tokenizers segment Chinese with rjieba, which is not installed: "
                "pip install 'isoform[roformer]' (or rjieba)"
            ) from None
        self.jieba, self.vocab = rjieba, vocab
        self.spacing = normalizers.BertNormalizer(
            clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False
        )

    def words(self, i: int, text: NormalizedString) -> list[NormalizedString]:
        pieces = []
        for word, start, end in self.jieba.tokenize(str(text), hmm=False):
            if word in self.vocab:
                pieces.append(text[start:end])
                continue
            for part in self.spacing.normalize_str(word).split():
                pieces.append(text[start : start + len(part)])
                start += len(part)
        return pieces

    def pre_tokenize(self, pretok: PreTokenizedString) -> None:
        pretok.split(self.words)


@register
class RoFormer(WordPiece):
    """BERT's WordPiece and ``[CLS] A [SEP] B [SEP]`` (model inputs: no token types); BertNormalizer without CJK spacing (jieba
    segments CJK text), jieba words as pre-tokens."""

    name = "roformer"
    names = ("roformer",)
    special = BERT_SPECIAL
    template = CLS_SEP
    input_names = WITHOUT_TYPES  # RoFormerTokenizer returns token_type_ids only when asked

    def convert(self, src: Source) -> Converted:
        tok = wordpiece(read_wordpiece_vocab(src.path), src.options, src.special)
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=False,
            strip_accents=flag_option(src.options, "strip_accents", None),
            lowercase=flag_option(src.options, "do_lower_case", True),
        )
        return Converted(tok)

    def finish(self, backend: Backend) -> None:
        jieba = JiebaPreTokenizer(backend.get_vocab(with_added_tokens=False))
        backend.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(jieba)

    def serialized(self, backend: Backend) -> str:
        custom = backend.pre_tokenizer
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        try:
            return backend.to_str()
        finally:
            backend.pre_tokenizer = custom

    def save_files(self, tok: Tokenizer, config: dict[str, Any], directory: pathlib.Path) -> None:
        config["tokenizer_class"] = "RoFormerTokenizer"  # what puts jieba back on load
