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


def languages_for(family: str, options: dict[str, Any]) -> Languages | None:
    """The family's languages, with ``src_lang``/``tgt_lang`` from ``options`` checked; else None."""
    if family == "mbart":
        languages = Languages({c: c for c in MBART_LANGUAGES}, "suffix", "en_XX", None)
    elif family == "m2m100":
        name = str(options.get("language_codes", "m2m100"))
        if name not in M2M100_LANGUAGES:
            raise TokenizerError(f"language_codes must be one of {', '.join(M2M100_LANGUAGES)}, got {name!r}")
        languages = Languages({c: f"__{c}__" for c in M2M100_LANGUAGES[name]}, "prefix", "en", None)
    else:
        return None
    if options.get("src_lang") is not None:
        languages.token(str(options["src_lang"]))
        languages.src_lang = str(options["src_lang"])
    if options.get("tgt_lang") is not None:
        languages.token(str(options["tgt_lang"]))
        languages.tgt_lang = str(options["tgt_lang"])
    return languages


def frame(backend: Tokenizer, languages: Languages, code: str, eos: str) -> None:
    """Set ``backend``'s post-processor to frame sequences with language ``code`` and ``eos``."""
    lang = languages.token(code)
    ids = {t: backend.token_to_id(t) for t in (lang, eos)}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise TokenizerError(f"language framing needs {missing} in the vocabulary")
    if languages.style == "suffix":
        single, pair = ["$A", eos, lang], ["$A", "$B", eos, lang]
    else:
        single, pair = [lang, "$A", eos], [f"{lang}:0", "$A:0", "$B:1", f"{eos}:1"]  # slow M2M100's type ids
    backend.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(ids.items())
    )
