"""Readers of the tokenizer file formats and of special-token values, shared by every family."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError

SPIECE = "▁"
SPM_FILES = ("spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


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


def content(value: Any) -> str | None:
    """The text of a special-token value: a string, ``{"content": ...}`` or an ``AddedToken``."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return str(value["content"])
    if isinstance(value, AddedToken):
        return value.content
    raise TokenizerError(f"cannot read special token {value!r}: expected a string or {{'content': ...}}")


def added_token(value: Any, special: bool) -> AddedToken:
    """An ``AddedToken`` from a string or an ``added_tokens_decoder`` entry (its flags kept)."""
    if isinstance(value, dict):
        keys = ("single_word", "lstrip", "rstrip", "normalized", "special")
        flags = {k: value[k] for k in keys if k in value}
        flags.setdefault("special", special)
        return AddedToken(str(value["content"]), **flags)
    return AddedToken(str(value), special=special)


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
