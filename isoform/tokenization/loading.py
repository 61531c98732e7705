"""Find a directory's tokenizer files, read its configs and build the ``tokenizers`` backend.

Order of preference: ``tokenizer.json``; WordPiece ``vocab.txt``; byte-level BPE ``vocab.json`` +
``merges.txt``; SentencePiece ``spiece.model`` / ``sentencepiece.bpe.model`` / ``tokenizer.model`` /
``spm.model``; Marian's ``source.spm``; a lone ``vocab.json`` (Wav2Vec2's characters). The family
(`isoform.tokenization.families`: how the files convert, which template and special tokens) comes from
``tokenizer_class`` in ``tokenizer_config.json``, else ``model_type`` in ``config.json``, else the file
that was found.
"""

from __future__ import annotations

import itertools
import json
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError
from isoform.tokenization import chat, families
from isoform.tokenization.files import SPM_FILES, added_token, content, optional_json, read_json

SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
VERY_LARGE_INTEGER = int(1e30)
LOOKED_FOR = (
    "tokenizer.json", "vocab.txt", "vocab.json + merges.txt", *SPM_FILES, "source.spm", "vocab.json"
)


@dataclass
class TokenizerSpec:
    """Everything ``Tokenizer`` needs: the Rust backend plus transformers-level settings."""

    backend: Backend
    family: families.Family  # this tokenizer's copy: its family-specific state and hooks
    source: str  # which file format was read
    tokenizer_class: str  # the class transformers' AutoTokenizer loads ("" when it goes by model_type)
    special: dict[str, str]  # role -> token text, e.g. {"pad_token": "[PAD]"}
    extra_special: list[str]
    model_max_length: int
    padding_side: str = "right"
    truncation_side: str = "right"
    model_input_names: list[str] = field(default_factory=list)
    clean_up_tokenization_spaces: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # the tokenizer_config.json that was read
    chat_template: str | dict[str, str] | None = None  # one template, or several by name


def load_spec(directory: pathlib.Path, overrides: dict[str, Any] | None = None) -> TokenizerSpec:
    """Read the tokenizer files of ``directory`` (see module docstring for the order).

    ``overrides`` replace keys of ``tokenizer_config.json`` (e.g. ``src_lang``), as keyword arguments
    to transformers' ``from_pretrained`` do.
    """
    config = {**optional_json(directory / "tokenizer_config.json"), **(overrides or {})}
    special_map = optional_json(directory / "special_tokens_map.json")
    model_config = optional_json(directory / "config.json")
    found = _find_format(directory)
    family, cls = families.detect(found, config, model_config)
    reader = None if found == "tokenizer.json" else family.reader(directory, found)
    special = dict(family.special)
    for key in SPECIAL_KEYS:  # tokenizer_config wins over special_tokens_map, both over defaults
        for source, file in ((config, "tokenizer_config.json"), (special_map, "special_tokens_map.json")):
            if key in source:
                special[key] = content(source[key], f"{key} of {file}")
                break
    special = {k: v for k, v in special.items() if v is not None}
    options = {**family.defaults, **config}
    family.setup(options)

    if reader is None:
        backend, pieces = _read_tokenizer_json(directory / found), ()
    else:
        backend, pieces = reader.convert(families.Source(directory, found, options, special))
    for tok in family.pipelines(backend):
        family.finish(tok)
        extra = _add_tokens(tok, directory, config, special_map, special, family, pieces, options)
        if reader is not None:
            family.template.attach(tok, special, family.special, options)
        tok.no_padding()
        tok.no_truncation()
        tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
    if family.languages is not None:
        family.languages.frame(backend, family.languages.src_lang, special.get("eos_token", "</s>"))

    names = config.get("model_input_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise TokenizerError(f"tokenizer_config.json: model_input_names must be a list of str, got {names!r:.80}")
    sides = {}
    for key, default in (("padding_side", family.padding_side), ("truncation_side", "right")):
        sides[key] = config.get(key, default)
        if sides[key] not in ("right", "left"):
            raise TokenizerError(f"tokenizer_config.json: {key} must be 'right' or 'left', got {sides[key]!r:.80}")
    return TokenizerSpec(
        backend=backend,
        family=family,
        source=found,
        tokenizer_class=cls,
        special=special,
        extra_special=extra,
        model_max_length=_max_length(config.get("model_max_length", family.model_max_length)),
        padding_side=sides["padding_side"],
        truncation_side=sides["truncation_side"],
        model_input_names=list(family.model_input_names(cls) if names is None else names),
        clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        config=config,
        chat_template=chat.load(directory, config),
    )


def _max_length(value: Any) -> int:
    """``model_max_length``: a length, or VERY_LARGE_INTEGER for none (absent, null, NaN or huge)."""
    if value is None or (isinstance(value, float) and (value != value or value >= 1e29)):
        return VERY_LARGE_INTEGER
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TokenizerError(f"tokenizer_config.json: model_max_length must be a non-negative number, got {value!r:.80}")
    return int(value) if value < 1e29 else VERY_LARGE_INTEGER


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
    if (directory / "vocab.json").is_file():  # alone: a character vocabulary (Wav2Vec2CTCTokenizer)
        return "vocab.json"
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise TokenizerError(
        f"no tokenizer files in {directory}: looked for {', '.join(LOOKED_FOR)}; "
        f"found {', '.join(present) if present else 'nothing'}"
    )


def _read_tokenizer_json(path: pathlib.Path) -> Backend:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path} is not a valid tokenizer.json: not UTF-8 ({e})") from e
    if re.search(r'"continuing_subword_prefix"\s*:\s*"[^"]', text):
        _check_bpe_prefix(path, text)
    try:
        return Backend.from_str(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # tokenizers raises a bare Exception on parse errors, a panic on some
        raise TokenizerError(f"{path} is not a valid tokenizer.json: {e}") from e


def _check_bpe_prefix(path: pathlib.Path, text: str) -> None:
    """Refuse BPE merges ``a b`` whose ``b`` is shorter than the model's ``continuing_subword_prefix``
    or splits a character at its length: ``tokenizers`` 0.23 slices ``b`` there unchecked and aborts
    the process (an invalid UTF-8 error message, then a panic at the FFI boundary)."""
    try:
        tree = json.loads(text)
    except ValueError:
        return  # tokenizers reports where the JSON is broken
    model = tree.get("model") if isinstance(tree, dict) else None
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
        return
    prefix, merges = model.get("continuing_subword_prefix"), model.get("merges")
    if not isinstance(prefix, str) or not isinstance(merges, list):
        return
    n = len(prefix.encode("utf-8"))
    for merge in merges:
        second = merge.split(" ", 1)[-1] if isinstance(merge, str) else merge[-1] if merge else None
        if not isinstance(second, str):
            continue
        data = second.encode("utf-8")
        if n > len(data) or (n < len(data) and data[n] & 0xC0 == 0x80):
            raise TokenizerError(
                f"{path} is not a valid tokenizer.json: merge {merge!r:.40} of model.merges does not fit "
                f"its continuing_subword_prefix {prefix!r:.20}"
            )


def _add_tokens(
    backend: Backend,
    directory: pathlib.Path,
    config: dict[str, Any],
    special_map: dict[str, Any],
    special: dict[str, str],
    family: families.Family,
    pieces: Any,
    options: dict[str, Any],
) -> list[str]:
    """Add configured tokens in transformers' order; return the extra special tokens' texts."""
    tokens: list[AddedToken] = []
    decoder = config.get("added_tokens_decoder") or {}
    if not isinstance(decoder, dict) or not all(isinstance(v, dict) and str(k).isdigit() for k, v in decoder.items()):
        raise TokenizerError(
            f"tokenizer_config.json: added_tokens_decoder must map ids to token entries, got {decoder!r:.80}"
        )
    for _, value in sorted(decoder.items(), key=lambda kv: int(kv[0])):
        tokens.append(added_token(value, special=value.get("special", False)))
    legacy = directory / "added_tokens.json"
    if legacy.is_file() and not decoder:
        found = read_json(legacy)
        if not isinstance(found, dict) or not all(isinstance(i, int) for i in found.values()):
            raise TokenizerError(f"{legacy} must map tokens to integer ids")
        for text, _ in sorted(found.items(), key=lambda kv: kv[1]):
            tokens.append(added_token(text, special=False))

    configured = config.get("extra_special_tokens", config.get("additional_special_tokens"))
    if configured is None:
        configured = special_map.get("additional_special_tokens")
    if isinstance(configured, dict):
        configured = list(configured.values())
    if configured is not None and not isinstance(configured, list | tuple):
        raise TokenizerError(
            f"additional_special_tokens / extra_special_tokens must be a list of tokens, got {configured!r:.80}"
        )
    extra = list(pieces) if configured is None else list(configured)
    extra = family.extra_special(extra, configured, options)

    have = {t.content for t in tokens} | {t.content for t in backend.get_added_tokens_decoder().values()}
    for role, text in special.items():
        if text not in have:
            tokens.append(AddedToken(text, special=True, lstrip=family.mask_lstrip and role == "mask_token"))
            have.add(text)
    extra_texts = []
    for value in extra:
        token = value if isinstance(value, AddedToken) else added_token(value, special=True)
        extra_texts.append(token.content)
        if token.content not in have:
            tokens.append(token)
            have.add(token.content)
    for special, run in itertools.groupby(tokens, key=lambda t: t.special):  # in order, a run per call
        (backend.add_special_tokens if special else backend.add_tokens)(list(run))
    return extra_texts
