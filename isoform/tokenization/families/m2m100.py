"""M2M100: SentencePiece segmentation with the ids of ``vocab.json`` (the fairseq dictionary)."""

from __future__ import annotations

from typing import Any

from isoform.errors import TokenizerError
from isoform.tokenization.families.base import Converted, Slow, Source, register
from isoform.tokenization.families.sentencepiece import SentencePiece
from isoform.tokenization.files import content, optional_json
from isoform.tokenization.languages import M2M100_LANGUAGES, Languages


@register
class M2M100(Slow, SentencePiece):
    """M2M100 (a slow class in transformers): ``__src__ A </s>`` framing, the language tokens first
    among the extra special tokens.

    The Unigram lists ``vocab.json`` in id order with each piece's SentencePiece score, so the Rust
    pipeline segments as SentencePiece does and emits the dictionary's ids directly."""

    name = "m2m100"
    names = ("m2m100", "m2m_100")
    special = {
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>",
    }  # fmt: skip

    def setup(self, options: dict[str, Any]) -> None:
        name = str(options.get("language_codes", "m2m100"))
        if name not in M2M100_LANGUAGES:
            raise TokenizerError(f"language_codes must be one of {', '.join(M2M100_LANGUAGES)}, got {name!r}")
        codes = {c: f"__{c}__" for c in M2M100_LANGUAGES[name]}
        self.languages = Languages(codes, "prefix", "en", None).configure(options)

    def convert(self, src: Source) -> Converted:
        proto = src.proto
        vocab = optional_json(src.directory / "vocab.json")
        if not vocab:
            raise TokenizerError(f"M2M100 tokenizer in {src.directory} needs vocab.json next to {src.found}")
        scores = {p.piece: p.score for p in proto.pieces if p.type == 1}  # normal pieces
        order = sorted(vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in order] != list(range(len(order))):
            raise TokenizerError("vocab.json ids must be 0..n-1 without gaps")
        missing = [p for p in scores if p not in vocab]
        if missing:
            raise TokenizerError(
                f"{len(missing)} SentencePiece pieces are not in vocab.json (e.g. {missing[:5]}); "
                "isoform needs every piece of the .model in vocab.json"
            )
        return Converted(self.unigram(proto, [(t, scores.get(t, 0.0)) for t, _ in order], src))

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        codes = [f"__{c}__" for c in M2M100_LANGUAGES[str(options.get("language_codes", "m2m100"))]]
        return codes + [t for t in (configured or []) if content(t) not in codes]
