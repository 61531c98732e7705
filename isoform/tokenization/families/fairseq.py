"""SentencePiece models with fairseq's id layout: XLM-RoBERTa, CamemBERT and mBART."""

from __future__ import annotations

from typing import Any

from isoform.tokenization.families.base import Source, register
from isoform.tokenization.families.sentencepiece import SentencePiece
from isoform.tokenization.files import content
from isoform.tokenization.languages import MBART_LANGUAGES, Languages
from isoform.tokenization.templates import BOS_EOS, ROBERTA_SPECIAL, Template

XLMR_TEMPLATE = Template(
    ("{bos_token}", "$A", "{eos_token}"),
    ("{bos_token}", "$A", "{eos_token}", "{eos_token}", "$B", "{eos_token}"),
)


@register
class XLMRoberta(SentencePiece):
    """XLM-R: ``<s> <pad> </s> <unk>``, the pieces after the model's first three, then `tail`."""

    name = "xlm-roberta"
    names = ("xlmroberta", "xlm-roberta")
    files = ("sentencepiece.bpe.model",)
    special = ROBERTA_SPECIAL
    template = XLMR_TEMPLATE
    unk_id = 3

    def vocab(self, src: Source) -> list[tuple[str, float]]:
        roles = {**self.special, **src.special}
        head = [roles[k] for k in ("bos_token", "pad_token", "eos_token", "unk_token")]
        return [(t, 0.0) for t in head] + super().vocab(src)[3:] + [(t, 0.0) for t in self.tail(roles)]

    def tail(self, roles: dict[str, str]) -> list[str]:
        """The tokens after the pieces."""
        return [roles["mask_token"]]


@register
class Camembert(SentencePiece):
    """CamemBERT: fairseq's ``<s>NOTUSED`` ... ``<unk>NOTUSED`` head, XLM-R's template."""

    name = "camembert"
    names = ("camembert",)
    special = ROBERTA_SPECIAL
    template = XLMR_TEMPLATE
    mask_lstrip = True

    def vocab(self, src: Source) -> list[tuple[str, float]]:
        roles = {**self.special, **src.special}
        head = [("<s>NOTUSED", 0.0), (roles["pad_token"], 0.0), ("</s>NOTUSED", 0.0)]
        head += [(roles["unk_token"], 0.0), ("<unk>NOTUSED", -100.0)]
        return head + super().vocab(src)[1:] + [(roles["mask_token"], 0.0)]

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        if configured is None and not extra:  # else the configured list, or the .model's control pieces
            return ["<s>NOTUSED", "</s>NOTUSED", "<unk>NOTUSED"]
        return extra


@register
class MBart(XLMRoberta):
    """mBART: XLM-R's ids with the language codes before ``<mask>``, no charsmap, ``A </s> src_lang``."""

    name = "mbart"
    names = ("mbart",)
    files = ()
    template = BOS_EOS  # replaced by the language framing
    mask_lstrip = True

    def setup(self, options: dict[str, Any]) -> None:
        codes = {c: c for c in MBART_LANGUAGES}
        self.languages = Languages(codes, "suffix", "en_XX", None).configure(options)

    def tail(self, roles: dict[str, str]) -> list[str]:
        return [*MBART_LANGUAGES, roles["mask_token"]]

    def normalizer(self, proto: Any, options: dict[str, Any]) -> Any:
        return None  # MBartTokenizer drops the charsmap

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        return MBART_LANGUAGES + [t for t in (configured or []) if content(t) not in MBART_LANGUAGES]
