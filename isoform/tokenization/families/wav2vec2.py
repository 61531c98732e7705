"""Wav2Vec2's character ``vocab.json`` (``Wav2Vec2CTCTokenizer``) and its CTC decoding.

transformers' class is a slow (Python) one: each character is a token (a space becomes the word
delimiter, ``|``), ``do_lower_case`` uppercases the input (the vocabularies are upper case) and
lowercases the decoded text; no special tokens are added. Multi-character vocabulary entries
(``<pad>``, ``<s>``, ...) are added tokens that strip the whitespace around them, the word delimiter
a special token. Decoding is CTC's: special tokens dropped (``skip_special_tokens``, never the
delimiter), repeated tokens collapsed (``group_tokens``), the pad token (CTC's blank) removed, the
delimiter back to a space, the text stripped.
"""

from __future__ import annotations

import functools
import itertools
import json
import pathlib
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import WordLevel

from isoform.errors import TokenizerError
from isoform.tokenization.families.base import Converted, Family, Source, register
from isoform.tokenization.files import read_json

if TYPE_CHECKING:
    from isoform.tokenization.tokenizer import Tokenizer

WAV2VEC2_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
DEFAULTS = {"word_delimiter_token": "|", "replace_word_delimiter_char": " ", "do_lower_case": False}
CLASS = "Wav2Vec2CTCTokenizer"
CASED_BELOW = 0x20000  # no code point above has an upper case


@functools.cache
def _uppercase() -> dict[str, str]:
    """Every character ``str.upper`` changes, and what it becomes."""
    chars = (chr(i) for i in range(CASED_BELOW))
    return {c: c.upper() for c in chars if c.upper() != c}


def uppercase_steps(vocab: dict[str, int]) -> list[Any]:
    """``str.upper`` as Replace normalizers, for the characters where it changes the ids: those that
    become several characters, and those it maps to or from a vocabulary character (any other one is
    unknown either way)."""
    return [
        normalizers.Replace(c, upper)
        for c, upper in _uppercase().items()
        if len(upper) != 1 or upper in vocab or c in vocab
    ]


def _stripping(vocab: dict[str, int]) -> list[AddedToken]:
    """The vocabulary's multi-character tokens as the class adds them last: matched before
    normalization, stripping the whitespace on both sides."""
    return [
        AddedToken(t, lstrip=True, rstrip=True, normalized=False, special=False)
        for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])
        if len(t) > 1
    ]


class CtcTemplate:
    """No special tokens (``$A``, pairs ``$A $B:1``); then the vocabulary's multi-character tokens
    get the class's flags back, over those the configs gave them (transformers adds them last)."""

    def attach(
        self, tok: Backend, special: dict[str, str], defaults: dict[str, str], options: dict[str, Any]
    ) -> None:
        tok.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
        tok.add_tokens(_stripping(tok.get_vocab(with_added_tokens=False)))


@register
class Wav2Vec2CTC(Family):
    """Wav2Vec2CTCTokenizer: characters of a ``vocab.json`` (a nested one by ``target_lang``)."""

    name = "wav2vec2"
    names = ("wav2vec2ctc", "wav2vec2")
    formats = ("vocab.json",)
    special = WAV2VEC2_SPECIAL
    template = CtcTemplate()
    defaults = DEFAULTS
    decode_options = ("group_tokens", "spaces_between_special_tokens")
    delimiter: str | None = "|"
    replace_char: str = " "
    lower_case: bool = False

    def setup(self, options: dict[str, Any]) -> None:
        self.delimiter = options.get("word_delimiter_token")
        self.replace_char = str(options.get("replace_word_delimiter_char", " "))
        self.lower_case = bool(options.get("do_lower_case", False))

    def convert(self, src: Source) -> Converted:
        vocab = read_json(src.path)
        lang = src.options.get("target_lang")
        if lang is not None:
            if not isinstance(vocab, dict) or not isinstance(vocab.get(lang), dict):
                raise TokenizerError(f"{src.path} has no vocabulary for target_lang {lang!r}")
            vocab = vocab[lang]
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise TokenizerError(
                f"{src.path} must map characters to ids (a nested, multilingual one needs target_lang "
                "in tokenizer_config.json)"
            )
        tok = Backend(WordLevel(vocab, unk_token=src.special.get("unk_token", WAV2VEC2_SPECIAL["unk_token"])))
        steps = uppercase_steps(vocab) if self.lower_case else []
        if self.delimiter is not None:
            steps.append(normalizers.Replace(" ", self.delimiter))
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one per character
        pad = src.special.get("pad_token", WAV2VEC2_SPECIAL["pad_token"])
        tok.decoder = decoders.CTC(pad_token=pad, word_delimiter_token=self.delimiter or "|", cleanup=False)
        tok.add_tokens(_stripping(vocab))
        return Converted(tok)

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        """The word delimiter is a model-specific special token (after the configured extra ones)."""
        texts = {getattr(t, "content", t) for t in extra}
        if self.delimiter is None or self.delimiter in texts:
            return extra
        return [*extra, AddedToken(self.delimiter, special=True, normalized=False)]

    def tokens(self, tok: Tokenizer, enc: Any, item: Any) -> list[str]:
        """The class's tokens: an unknown character is itself (upper-cased), not the unk token, and an
        added token its text without the whitespace it strips."""
        texts = item if isinstance(item, tuple) else (item,)
        unk, unk_id = tok.unk_token, tok.unk_token_id
        out, previous, k = [], None, 0
        for token, index, span, seq in zip(enc.tokens, enc.ids, enc.offsets, enc.sequence_ids, strict=True):
            k = k + 1 if (seq, span) == previous else 0
            previous = (seq, span)
            original = texts[seq][span[0] : span[1]] if seq is not None else ""
            if index != unk_id or token != unk or original.strip() == unk:
                out.append(tok.backend.id_to_token(index))  # an added token's own text holds what it strips
                continue
            chars = self.characters(original)
            out.append(chars[k] if k < len(chars) else token)
        return out

    def characters(self, text: str) -> list[str]:
        """``_tokenize`` of a text between added tokens."""
        if self.lower_case:
            text = text.upper()
        return list(text if self.delimiter is None else text.replace(" ", self.delimiter))

    def decode(
        self,
        tok: Tokenizer,
        ids: list[int],
        skip_special_tokens: bool,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> str:
        """CTC decoding (``Wav2Vec2CTCTokenizer._decode``); ids outside the vocabulary are unk."""
        unk = tok.unk_token
        tokens = [tok.backend.id_to_token(i) for i in ids]
        tokens = [unk if t is None else t for t in tokens]
        if skip_special_tokens:
            special = set(tok.all_special_tokens) - {self.delimiter}
            tokens = [t for t in tokens if t not in special]
        chars = [t for t, _ in itertools.groupby(tokens)] if group_tokens else tokens
        chars = [self.replace_char if c == self.delimiter else c for c in chars if c != tok.pad_token]
        text = (" " if spaces_between_special_tokens else "").join(chars).strip()
        return text.lower() if self.lower_case else text

    def save_files(self, tok: Tokenizer, config: dict[str, Any], directory: pathlib.Path) -> None:
        """The class reads ``vocab.json`` (the base vocabulary; added tokens are in the config)."""
        config["tokenizer_class"] = CLASS
        config.pop("target_lang", None)  # the saved vocabulary is that language's
        vocab = tok.backend.get_vocab(with_added_tokens=False)
        text = json.dumps(vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (directory / "vocab.json").write_text(text, encoding="utf-8")
