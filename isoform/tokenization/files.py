"""Readers of the tokenizer file formats and of special-token values, shared by every family."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError

SPIECE = "▁"
SPM_FILES = ("spiece.model", "sentencepiece.bpe.model", "tokenizer.model", "spm.model")  # spm: DeBERTa-v2


def read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON: {e}") from e


def optional_json(path: pathlib.Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when there is no such file."""
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} must hold a JSON object")
    return data


def content(value: Any, where: str = "") -> str | None:
    """The text of a special-token value: a string, ``{"content": ...}`` or an ``AddedToken``
    (``where``: the file and key it came from, for the error)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    if isinstance(value, AddedToken):
        return value.content
    raise TokenizerError(
        f"cannot read special token {where + ' ' if where else ''}{value!r:.80}: expected a string or {{'content': ...}}"
    )


def added_token(value: Any, special: bool) -> AddedToken:
    """An ``AddedToken`` from a string or an ``added_tokens_decoder`` entry (its flags kept)."""
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str) and value["content"]:
        keys = ("single_word", "lstrip", "rstrip", "normalized", "special")
        flags = {k: value[k] for k in keys if k in value}
        bad = {k: v for k, v in flags.items() if not isinstance(v, bool)}
        if bad:
            raise TokenizerError(f"added token {value['content']!r}: flags {bad} must be true or false")
        flags.setdefault("special", special)
        return AddedToken(value["content"], **flags)
    if isinstance(value, str) and value:
        return AddedToken(value, special=special)
    raise TokenizerError(f"cannot read added token {value!r:.80}: expected a non-empty string or {{'content': ...}}")


def flag_option(options: dict[str, Any], key: str, default: bool | None) -> bool | None:
    """Boolean ``options[key]`` (``default`` when absent; None only where the default is None)."""
    value = options.get(key, default)
    if isinstance(value, bool) or (value is None and default is None):
        return value
    raise TokenizerError(f"tokenizer_config.json: {key} must be true or false, got {value!r:.80}")


def int_option(options: dict[str, Any], key: str, default: int, maximum: int = 1 << 16) -> int:
    """Integer ``options[key]`` in ``0..maximum`` (``default`` when absent)."""
    value = options.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum:
        return value
    raise TokenizerError(f"tokenizer_config.json: {key} must be an int from 0 to {maximum}, got {value!r:.80}")


def token_id(tok: Backend, token: str) -> int:
    """Id of ``token`` in ``tok``'s vocabulary; TokenizerError when it is not there."""
    found = tok.token_to_id(token)
    if found is None:
        raise TokenizerError(f"special token {token!r} is not in the vocabulary")
    return found


def read_wordpiece_vocab(path: pathlib.Path) -> dict[str, int]:
    """``vocab.txt``: one token a line, id = line number (duplicates keep the last id, as transformers)."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    if not vocab:
        raise TokenizerError(f"{path} is empty")
    return vocab


def read_bpe_files(vocab_path: pathlib.Path, merges_path: pathlib.Path) -> tuple[dict[str, int], list]:
    """``vocab.json`` + ``merges.txt`` (the ``#version`` header line is skipped)."""
    vocab = read_json(vocab_path)
    if not isinstance(vocab, dict):
        raise TokenizerError(f"{vocab_path} must map tokens to ids")
    if not merges_path.is_file():
        raise TokenizerError(
            f"{merges_path} is missing: BPE needs it next to {vocab_path.name} (a vocab.json alone is read "
            "only for a tokenizer_class or model_type that reads one, as Wav2Vec2CTCTokenizer)"
        )
    merges = []
    for line in merges_path.read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"{merges_path}: bad merge line {line!r} (expected two tokens)")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def read_spm(path: pathlib.Path) -> Any:
    """Parse a SentencePiece ``.model`` (protobuf) without loading it into a processor."""
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except DecodeError as e:
        raise TokenizerError(f"{path} is not a SentencePiece model (protobuf parse failed: {e})") from e
    if not proto.pieces:
        raise TokenizerError(f"{path} is not a SentencePiece model (no pieces)")
    return proto
