"""Speech2Text (``sentencepiece.bpe.model`` + ``vocab.json``): SentencePiece pieces, ``vocab.json`` ids.

transformers' ``Speech2TextTokenizer`` (model_type ``speech_to_text``) is a slow class: it segments
each text between its special tokens with the SentencePiece model and looks every piece up in
``vocab.json`` (fairseq's dictionary, in the model's id order for fairseq's checkpoints), then
appends ``</s>`` (pairs: ``A B </s>``). Multilingual checkpoints (``lang_codes``, e.g. ``"mustc"``)
prefix every sequence, inputs and labels alike, with the ``<lang:xx>`` token of ``tgt_lang`` (the
first language when none is set); the language tokens lead the extra special tokens. Decoding keeps
special tokens verbatim, each followed by a space, decodes each run of pieces between them on its
own (upper-cased with ``do_upper_case``) and strips the text; ``do_lower_case`` changes nothing the
class encodes (transformers lowercases only non-special added tokens with it).

The Unigram here lists ``vocab.json`` in id order with each piece's SentencePiece score, so the Rust
pipeline segments as SentencePiece does and emits ``vocab.json``'s ids (as the M2M100 family does); it
reads Unigram and character models (fairseq's ``unigram`` / ``char`` vocabularies), not BPE ones. The
language tokens must have the same id in both files (transformers prefixes the model's id), as fairseq
writes them. Saved, the tokenizer also gets ``vocab.json`` and the model, for transformers' class.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer as Backend
from tokenizers import processors

from isoform.errors import TokenizerError
from isoform.tokenization.families.base import Converted, Slow, Source, register
from isoform.tokenization.families.sentencepiece import SentencePiece
from isoform.tokenization.files import content, read_json
from isoform.tokenization.languages import Languages
from isoform.tokenization.templates import EOS

if TYPE_CHECKING:
    from isoform.tokenization.tokenizer import Tokenizer

CLASS = "Speech2TextTokenizer"
SPM = "sentencepiece.bpe.model"
LANG_CODES = {"mustc": ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]}  # transformers' LANGUAGES
S2T_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
UNUSED_SCORE = -1e6  # vocab.json entries the model lacks (special tokens): SentencePiece never emits them
UNIGRAM, CHAR = 1, 4  # SentencePiece model types whose segmentation a Unigram over the pieces gives


class TargetLanguage(Languages):
    """Speech2Text's one language, ``tgt_lang``: its token prefixes inputs and labels alike, so
    ``src_lang`` is the same code, and setting either reframes the pipeline framed last."""

    framed: tuple[Backend, str] | None = None  # (pipeline, eos token) of the last `frame`
    _tgt: str | None = None

    @property  # type: ignore[override]
    def src_lang(self) -> str | None:
        return self.tgt_lang

    @src_lang.setter
    def src_lang(self, code: str | None) -> None:
        self.tgt_lang = code

    @property  # type: ignore[override]
    def tgt_lang(self) -> str | None:
        return self._tgt

    @tgt_lang.setter
    def tgt_lang(self, code: str | None) -> None:
        self._tgt = code
        if code is not None and self.framed is not None:
            backend, eos = self.framed
            self.frame(backend, code, eos)

    def frame(self, backend: Backend, code: str, eos: str) -> None:
        """``<lang:xx> A </s>`` (pairs ``<lang:xx> A B </s>``); the template names its tokens ``lang`` and
        ``eos``, as a token with a colon cannot stand in a template."""
        lang = self.token(code)
        ids = {t: backend.token_to_id(t) for t in (lang, eos)}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"language framing needs {missing} in the vocabulary")
        backend.post_processor = processors.TemplateProcessing(
            single=["lang", "$A", "eos"],
            pair=["lang:0", "$A:0", "$B:1", "eos:1"],
            special_tokens=[
                {"id": n, "ids": [ids[t]], "tokens": [t]} for n, t in (("lang", lang), ("eos", eos))
            ],
        )
        self.framed = (backend, eos)


@register
class Speech2Text(Slow, SentencePiece):
    """Speech2TextTokenizer: SentencePiece segmentation with ``vocab.json`` ids, ``[<lang:xx>] A </s>``."""

    name = "speech_to_text"
    names = ("speech2text", "speech_to_text")
    formats = (SPM,)
    special = S2T_SPECIAL
    template = EOS  # multilingual: replaced by the language framing
    upper_case: bool = False
    model_file: pathlib.Path | None = None  # the SentencePiece model read (saved beside tokenizer.json)

    def setup(self, options: dict[str, Any]) -> None:
        self.upper_case = bool(options.get("do_upper_case", False))
        name = options.get("lang_codes")
        if name is None:
            return  # no languages: tgt_lang is ignored, as transformers ignores it
        if name not in LANG_CODES:
            raise TokenizerError(f"lang_codes must be one of {', '.join(LANG_CODES)} or null, got {name!r}")
        codes = LANG_CODES[name]
        languages = TargetLanguage({c: f"<lang:{c}>" for c in codes}, "prefix", codes[0], codes[0])
        self.languages = languages.configure({"tgt_lang": options.get("tgt_lang")})

    def convert(self, src: Source) -> Converted:
        proto, path = src.proto, src.directory / "vocab.json"
        if proto.trainer_spec.model_type not in (UNIGRAM, CHAR):
            raise TokenizerError(
                f"{src.path}: only Unigram and character SentencePiece models are supported for "
                "Speech2Text (this one is BPE or word-level)"
            )
        if not path.is_file():
            raise TokenizerError(f"Speech2Text tokenizer in {src.directory} needs vocab.json next to {SPM}")
        vocab = read_json(path)
        if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
            raise TokenizerError(f"{path} must map pieces to integer ids")
        order = sorted(vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in order] != list(range(len(order))):
            raise TokenizerError(f"{path}: ids must be 0..n-1 without gaps")
        # normal pieces keep their scores, user-defined ones SentencePiece's (0), the rest never win
        scores = {p.piece: p.score if p.type == 1 else 0.0 for p in proto.pieces if p.type in (1, 4)}
        missing = [p for p in scores if p not in vocab]
        if missing:
            raise TokenizerError(
                f"{len(missing)} SentencePiece pieces are not in vocab.json (e.g. {missing[:5]}); "
                "isoform needs every piece of the .model in vocab.json"
            )
        unk = src.special.get("unk_token", S2T_SPECIAL["unk_token"])
        if unk not in vocab:
            raise TokenizerError(f"{path} has no unknown token {unk!r}")
        if self.languages is not None:
            model_ids = {p.piece: i for i, p in enumerate(proto.pieces)}
            for token in self.languages.tokens.values():
                if model_ids.get(token) != vocab.get(token):  # transformers prefixes the model's id
                    raise TokenizerError(
                        f"language token {token!r} has id {vocab.get(token)} in vocab.json but "
                        f"{model_ids.get(token)} in {SPM}; isoform needs them equal (as fairseq writes them)"
                    )
        self.model_file = src.path
        return Converted(self.unigram(proto, [(t, scores.get(t, UNUSED_SCORE)) for t, _ in order], src))

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        """The language tokens first, then the configured ones (the model's pieces are not special)."""
        codes = [] if self.languages is None else list(self.languages.tokens.values())
        return codes + [t for t in (configured or []) if content(t) not in codes]

    def decode(self, tok: Tokenizer, ids: list[int], skip_special_tokens: bool) -> str:
        """``convert_tokens_to_string``: special tokens verbatim and a space, each run of pieces between
        them decoded on its own (upper-cased with ``do_upper_case``), the whole stripped."""
        special, unk = set(tok.all_special_tokens), tok.unk_token
        tokens = tok.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
        out, run = "", []
        for token in (unk if t is None else t for t in tokens):  # ids past the vocabulary: unk
            if token in special:
                out += self.decode_pieces(tok, run) + token + " "
                run = []
            else:
                run.append(token)
        return (out + self.decode_pieces(tok, run)).strip()

    def decode_pieces(self, tok: Tokenizer, pieces: list[str]) -> str:
        text = tok.backend.decoder.decode(pieces) if pieces else ""
        return text.upper() if self.upper_case else text

    def save_files(self, tok: Tokenizer, config: dict[str, Any], directory: pathlib.Path) -> None:
        """Saved as Speech2TextTokenizer with the files it reads (``vocab.json``, the SentencePiece model)
        where the model read is known; else as the generic class over tokenizer.json."""
        if self.model_file is None and not (directory / SPM).is_file():
            config["tokenizer_class"] = "TokenizersBackend"
            return
        config["tokenizer_class"] = CLASS
        vocab = tok.backend.get_vocab(with_added_tokens=False)
        ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
        (directory / "vocab.json").write_text(
            json.dumps(ordered, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        if self.model_file is not None and self.model_file.resolve() != (directory / SPM).resolve():
            shutil.copyfile(self.model_file, directory / SPM)
