"""Find a directory's tokenizer files, read its configs and build the ``tokenizers`` backend.

Order of preference: ``tokenizer.json``; WordPiece ``vocab.txt``; byte-level BPE ``vocab.json`` +
``merges.txt``; SentencePiece ``spiece.model`` / ``sentencepiece.bpe.model`` / ``tokenizer.model``.
The tokenizer family (which normalizer, template and special tokens) comes from ``tokenizer_class``
in ``tokenizer_config.json``, else ``model_type`` in ``config.json``, else the file that was found.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError
from isoform.tokenization import convert, marian
from isoform.tokenization.languages import M2M100_LANGUAGES, MBART_LANGUAGES, Languages, frame, languages_for

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
VERY_LARGE_INTEGER = int(1e30)
SPM_FILES = ("spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
LOOKED_FOR = ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt", *SPM_FILES, "source.spm")

_BERT = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
_ROBERTA = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
    "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
}  # fmt: skip
DEFAULT_SPECIAL: dict[str, dict[str, str]] = {
    "bert": _BERT,
    "mpnet": {**_ROBERTA, "unk_token": "[UNK]"},
    "gpt2": {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    "qwen2": {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    "openai-gpt": {"unk_token": "<unk>"},
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "camembert": _ROBERTA,
    "t5": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "albert": {
        **_BERT,
        "bos_token": "[CLS]",
        "eos_token": "[SEP]",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    },
    "llama": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    "mbart": _ROBERTA,
    "blenderbot": _ROBERTA,
    "pegasus": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask_2>"},
    "m2m100": {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    },
    "marian": {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "generic": {},
    "sentencepiece": {},  # the .model's own bos/eos/unk (convert.spm_special)
}
# tokenizer_class (without "Tokenizer"/"TokenizerFast") or model_type -> family
FAMILY_OF = {
    "bert": "bert", "distilbert": "bert", "electra": "bert", "mpnet": "mpnet", "gpt2": "gpt2", "gpt_neo": "gpt2",
    "openaigpt": "openai-gpt", "openai-gpt": "openai-gpt", "qwen2": "qwen2", "roberta": "roberta",
    "bart": "roberta", "t5": "t5", "mt5": "t5", "albert": "albert", "xlmroberta": "xlm-roberta",
    "xlm-roberta": "xlm-roberta", "camembert": "camembert", "llama": "llama", "mbart": "mbart",
    "pegasus": "pegasus", "blenderbot": "blenderbot", "m2m100": "m2m100", "m2m_100": "m2m100", "marian": "marian",
}  # fmt: skip
# model_types transformers' AutoTokenizer loads with its generic TokenizersBackend, whatever
# tokenizer_class says (Mistral checkpoints name LlamaTokenizer)
BACKEND_MODEL_TYPES = {"mistral"}
BACKEND_CLASSES = ("pretrained", "tokenizersbackend", "pretrainedtokenizer")
# families whose own format isoform does not read (a tokenizer.json next to it still works)
UNSUPPORTED = {
    "mbart50": "mBART-50", "blenderbotsmall": "BlenderbotSmall", "blenderbot-small": "BlenderbotSmall",
}  # fmt: skip
FILE_FAMILY = {"vocab.txt": "bert", "vocab.json": "gpt2", "spiece.model": "t5", "source.spm": "marian"}
FILE_FAMILY.update({"sentencepiece.bpe.model": "xlm-roberta", "tokenizer.model": "llama"})
SPM_FAMILIES = ("t5", "xlm-roberta", "llama")  # the families FILE_FAMILY gives SentencePiece files
WITH_TYPES = ["input_ids", "token_type_ids", "attention_mask"]
WITHOUT_TYPES = ["input_ids", "attention_mask"]


@dataclass
class TokenizerSpec:
    """Everything ``Tokenizer`` needs: the Rust backend plus transformers-level settings."""

    backend: Backend
    family: str
    source: str  # which file format was read
    tokenizer_class: str  # the class transformers' AutoTokenizer loads ("" when it goes by model_type)
    special: dict[str, str]  # role -> token text, e.g. {"pad_token": "[PAD]"}
    extra_special: list[str]
    model_max_length: int
    padding_side: str = "right"
    truncation_side: str = "right"
    model_input_names: list[str] = field(default_factory=lambda: list(WITH_TYPES))
    clean_up_tokenization_spaces: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # the tokenizer_config.json that was read
    languages: Languages | None = None  # mBART / M2M100 language codes
    target_backend: Backend | None = None  # Marian: the target side's pipeline (``as_target``)
    decode_pieces: Callable[[list[str]], str] | None = None  # Marian: the source model's decode_pieces
    unknown_runs: dict[str, Any] = field(default_factory=dict)  # Marian: side -> marian.UnknownRuns


def read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON: {e}") from e


def _content(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return str(value["content"])
    if isinstance(value, AddedToken):
        return value.content
    raise TokenizerError(f"cannot read special token {value!r}: expected a string or {{'content': ...}}")


def _added_token(value: Any, special: bool) -> AddedToken:
    if isinstance(value, dict):
        keys = ("single_word", "lstrip", "rstrip", "normalized", "special")
        flags = {k: value[k] for k in keys if k in value}
        flags.setdefault("special", special)
        return AddedToken(str(value["content"]), **flags)
    return AddedToken(str(value), special=special)


def pick_family(config: dict[str, Any], model_config: dict[str, Any], file_family: str) -> tuple[str, str]:
    """Return (family, tokenizer class name) for a tokenizer_config / config.json pair, as AutoTokenizer picks."""
    cls = str(config.get("tokenizer_class") or "")
    key = cls.removesuffix("Fast").removesuffix("Tokenizer").lower()
    model_type = str(model_config.get("model_type") or "").lower()
    if model_type in BACKEND_MODEL_TYPES or (cls and key in BACKEND_CLASSES):
        return ("sentencepiece" if file_family in SPM_FAMILIES else file_family), "TokenizersBackend"
    if key in FAMILY_OF:
        return FAMILY_OF[key], cls
    if key in UNSUPPORTED:
        return key, cls
    if cls:
        return file_family, cls  # unknown class: behave like the file's format
    if model_type in UNSUPPORTED:
        return model_type, cls
    return FAMILY_OF.get(model_type, file_family), cls


def load_spec(directory: pathlib.Path, overrides: dict[str, Any] | None = None) -> TokenizerSpec:
    """Read the tokenizer files of ``directory`` (see module docstring for the order).

    ``overrides`` replace keys of ``tokenizer_config.json`` (e.g. ``src_lang``), as keyword arguments
    to transformers' ``from_pretrained`` do.
    """
    config = {**_optional_json(directory / "tokenizer_config.json"), **(overrides or {})}
    special_map = _optional_json(directory / "special_tokens_map.json")
    model_config = _optional_json(directory / "config.json")
    found = _find_format(directory)
    file_family = "generic" if found == "tokenizer.json" else FILE_FAMILY[found]
    family, cls = pick_family(config, model_config, file_family)
    if found == "tokenizer.json" and not cls:
        family = "generic"
    if family in UNSUPPORTED and found != "tokenizer.json":
        raise TokenizerError(
            f"{UNSUPPORTED[family]} tokenizers are not supported yet ({directory}); a tokenizer.json "
            "saved by transformers (tokenizer.save_pretrained) in the same directory would be read"
        )
    special = dict(DEFAULT_SPECIAL.get(family, {}))
    for key in SPECIAL_KEYS:  # tokenizer_config wins over special_tokens_map, both over defaults
        for source in (config, special_map):
            if key in source:
                special[key] = _content(source[key])
                break
    special = {k: v for k, v in special.items() if v is not None}
    options = dict(config)
    if family == "blenderbot":
        options.setdefault("add_prefix_space", True)
    languages = languages_for(family, options)

    backend, spm_special = _build_backend(directory, found, family, options, special)
    target, runs = None, {}
    if found == "source.spm":  # Marian: the target side gets its own pipeline
        runs = {"source": spm_special}
        target, runs["target"] = marian.side_backend(directory, "target", options, special)
        spm_special = []
    for tok in (backend, target) if target is not None else (backend,):
        extra = _add_tokens(tok, directory, config, special_map, special, family, spm_special, options)
        if found != "tokenizer.json":
            convert.attach_post_processor(tok, family, special, options)
        tok.no_padding()
        tok.no_truncation()
        tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
    if languages is not None:
        frame(backend, languages, languages.src_lang, special.get("eos_token", "</s>"))

    max_len = config.get("model_max_length", 512 if family == "marian" else None)
    names = config.get("model_input_names")
    if names is None:
        names = WITH_TYPES if family == "bert" and cls != "DistilBertTokenizer" else WITHOUT_TYPES
    return TokenizerSpec(
        backend=backend,
        family=family,
        source=found,
        tokenizer_class=cls,
        special=special,
        extra_special=extra,
        model_max_length=int(max_len)
        if isinstance(max_len, int | float) and max_len < 1e29
        else VERY_LARGE_INTEGER,
        padding_side=str(config.get("padding_side", "left" if family == "llama" else "right")),
        truncation_side=str(config.get("truncation_side", "right")),
        model_input_names=list(names),
        clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        config=config,
        languages=languages,
        target_backend=target,
        unknown_runs=runs,
        decode_pieces=marian.piece_decoder(directory) if target is not None else None,
    )


def _optional_json(path: pathlib.Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} must hold a JSON object")
    return data


def _find_format(directory: pathlib.Path) -> str:
    if (directory / "tokenizer.json").is_file():
        return "tokenizer.json"
    if (directory / "vocab.txt").is_file():
        return "vocab.txt"
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return "vocab.json"
    for name in SPM_FILES:
        if (directory / name).is_file():
            return name
    if (directory / "source.spm").is_file():
        return "source.spm"
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise TokenizerError(
        f"no tokenizer files in {directory}: looked for {', '.join(LOOKED_FOR)}; "
        f"found {', '.join(present) if present else 'nothing'}"
    )


def _build_backend(
    directory: pathlib.Path, found: str, family: str, options: dict[str, Any], special: dict[str, str]
) -> tuple[Backend, Any]:
    """The backend and what comes with it: SentencePiece control pieces, or Marian's ``UnknownRuns``."""
    path = directory / found
    if found == "tokenizer.json":
        try:
            return Backend.from_file(str(path)), []
        except Exception as e:  # tokenizers raises a bare Exception on parse errors
            raise TokenizerError(f"{path} is not a valid tokenizer.json: {e}") from e
    if found == "vocab.txt":
        return convert.wordpiece(convert.read_wordpiece_vocab(path), options, special), []
    if found == "vocab.json":
        vocab, merges = convert.read_bpe_files(path, directory / "merges.txt")
        if family == "openai-gpt":
            return convert.openai_gpt_bpe(vocab, merges, special), []
        if family == "qwen2":
            return convert.qwen2_bpe(vocab, merges, options), []
        return convert.byte_level_bpe(vocab, merges, options), []
    if found == "source.spm":
        return marian.side_backend(directory, "source", options, special)
    proto = convert.read_spm(path)
    if family == "m2m100":
        vocab = _optional_json(directory / "vocab.json")
        if not vocab:
            raise TokenizerError(f"M2M100 tokenizer in {directory} needs vocab.json next to {found}")
        return convert.spm_with_vocab(proto, vocab, options, special), []
    # control (3) and user-defined (4) pieces become added tokens, as transformers' extractor does
    pieces = [
        AddedToken(p.piece, normalized=False, special=p.type == 3) for p in proto.pieces if p.type in (3, 4)
    ]
    if family == "sentencepiece":  # user-defined pieces stay in the model (split off by its pre-tokenizer)
        for role, token in convert.spm_special(proto).items():
            special.setdefault(role, token)
        return convert.spm_generic(proto, options), [p for p in pieces if p.special]
    unigram = ("t5", "albert", "xlm-roberta", "camembert", "mbart", "pegasus")
    if family == "llama" or (family not in unigram and proto.trainer_spec.model_type == 2):
        return convert.spm_bpe(proto, options, special), pieces
    spm_family = family if family in unigram else "t5"
    return convert.spm_unigram(proto, spm_family, options, special), pieces


def _add_tokens(
    backend: Backend,
    directory: pathlib.Path,
    config: dict[str, Any],
    special_map: dict[str, Any],
    special: dict[str, str],
    family: str,
    spm_pieces: list[AddedToken],
    options: dict[str, Any],
) -> list[str]:
    """Add configured tokens in transformers' order; return the extra special tokens' texts."""
    tokens: list[AddedToken] = []
    decoder = config.get("added_tokens_decoder") or {}
    for _, value in sorted(decoder.items(), key=lambda kv: int(kv[0])):
        tokens.append(_added_token(value, special=bool(value.get("special", False))))
    legacy = directory / "added_tokens.json"
    if legacy.is_file() and not decoder:
        for text, _ in sorted(read_json(legacy).items(), key=lambda kv: kv[1]):
            tokens.append(AddedToken(text, special=False))

    extra_values = config.get("extra_special_tokens", config.get("additional_special_tokens"))
    if extra_values is None:
        extra_values = special_map.get("additional_special_tokens")
    if isinstance(extra_values, dict):
        extra_values = list(extra_values.values())
    extra: list[Any] = list(spm_pieces) if extra_values is None else list(extra_values)
    if family == "camembert" and extra_values is None and not spm_pieces:  # else the .model's control pieces
        extra = ["<s>NOTUSED", "</s>NOTUSED", "<unk>NOTUSED"]
    if family == "t5" and not any("<extra_id_" in str(_content(t)) for t in extra):
        extra += [f"<extra_id_{i}>" for i in range(int(options.get("extra_ids", 100)))]
    extra = _family_extras(family, extra, extra_values, options)

    have = {t.content for t in tokens} | {t.content for t in backend.get_added_tokens_decoder().values()}
    for role, text in special.items():
        if text not in have:
            lstrip = family in ("camembert", "mbart", "blenderbot", "mpnet") and role == "mask_token"
            tokens.append(AddedToken(text, special=True, lstrip=lstrip))
            have.add(text)
    extra_texts = []
    for value in extra:
        token = value if isinstance(value, AddedToken) else _added_token(value, special=True)
        extra_texts.append(token.content)
        if token.content not in have:
            tokens.append(token)
            have.add(token.content)
    for token in tokens:
        (backend.add_special_tokens if token.special else backend.add_tokens)([token])
    return extra_texts


def _family_extras(family: str, extra: list[Any], configured: Any, options: dict[str, Any]) -> list[Any]:
    """Extra special tokens the transformers class adds itself (languages, Pegasus' ``<unk_i>``)."""
    if family == "mbart":
        return MBART_LANGUAGES + [t for t in (configured or []) if _content(t) not in MBART_LANGUAGES]
    if family == "m2m100":
        codes = [f"__{c}__" for c in M2M100_LANGUAGES[str(options.get("language_codes", "m2m100"))]]
        return codes + [t for t in (configured or []) if _content(t) not in codes]
    if family == "pegasus" and configured is None:  # else the configured list replaces PegasusTokenizer's own
        sent = _content(options.get("mask_token_sent", "<mask_1>"))
        return ([] if sent is None else [sent]) + [
            f"<unk_{i}>" for i in range(2, int(options.get("offset", 103)))
        ]
    return extra
