"""Language codes of the multilingual seq2seq tokenizers (mBART, M2M100) and their templates.

mBART marks a sequence with a suffix, ``A </s> en_XX``; M2M100 with a prefix, ``__en__ A </s>``.
The source language (``src_lang``) frames ``input_ids``; the target language (``tgt_lang``) frames
``labels`` (``tok(text, text_target=...)``), exactly as transformers' tokenizers switch between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer, processors

from isoform.errors import TokenizerError

MBART_LANGUAGES = [
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN", "it_IT",
    "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO", "ru_RU", "si_LK",
    "tr_TR", "vi_VN", "zh_CN",
]  # fmt: skip
M2M100_LANGUAGES = {
    "m2m100": [
        "af", "am", "ar", "ast", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "ceb", "cs", "cy", "da",
        "de", "el", "en", "es", "et", "fa", "ff", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi",
        "hr", "ht", "hu", "hy", "id", "ig", "ilo", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "lb",
        "lg", "ln", "lo", "lt", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no", "ns", "oc",
        "or", "pa", "pl", "ps", "pt", "ro", "ru", "sd", "si", "sk", "sl", "so", "sq", "sr", "ss", "su", "sv",
        "sw", "ta", "th", "tl", "tn", "tr", "uk", "ur", "uz", "vi", "wo", "xh", "yi", "yo", "zh", "zu",
    ],
    "wmt21": ["en", "ha", "is", "ja", "cs", "ru", "zh", "de"],
}  # fmt: skip


@dataclass
class Languages:
    """The language codes of a tokenizer: ``code -> token`` (``"en" -> "__en__"``) and the framing."""

    tokens: dict[str, str]
    style: str  # "suffix" (mBART: A </s> lang) or "prefix" (M2M100: lang A </s>)
    src_lang: str
    tgt_lang: str | None

    def token(self, code: str) -> str:
        """The token of language ``code`` (a code such as ``"de"`` or its token ``"__de__"``)."""
        if code in self.tokens:
            return self.tokens[code]
        if code in self.tokens.values():
            return code
        raise TokenizerError(f"unknown language code {code!r}; this tokenizer knows {', '.join(self.tokens)}")

    def configure(self, options: dict[str, Any]) -> Languages:
        """Take ``src_lang`` / ``tgt_lang`` from ``options`` (checked); return ``self``."""
        if options.get("src_lang") is not None:
            self.token(str(options["src_lang"]))
            self.src_lang = str(options["src_lang"])
        if options.get("tgt_lang") is not None:
            self.token(str(options["tgt_lang"]))
            self.tgt_lang = str(options["tgt_lang"])
        return self

    def frame(self, backend: Tokenizer, code: str, eos: str) -> None:
        """Set ``backend``'s post-processor to frame sequences with language ``code`` and ``eos``."""
        lang = self.token(code)
        ids = {t: backend.token_to_id(t) for t in (lang, eos)}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"language framing needs {missing} in the vocabulary")
        if self.style == "suffix":
            single, pair = ["$A", eos, lang], ["$A", "$B", eos, lang]
        else:  # slow M2M100's type ids
            single, pair = [lang, "$A", eos], [f"{lang}:0", "$A:0", "$B:1", f"{eos}:1"]
        backend.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=list(ids.items())
        )
