"""Write a ``Tokenizer`` back in the layout transformers loads: tokenizer.json + configs."""

from __future__ import annotations

import json
import pathlib
from typing import TYPE_CHECKING, Any

from isoform.errors import TokenizerError
from isoform.staging import staged_directory
from isoform.tokenization import chat
from isoform.tokenization.loading import VERY_LARGE_INTEGER, TokenizerSpec

if TYPE_CHECKING:
    from isoform.tokenization.tokenizer import Tokenizer

# keys of the source tokenizer_config.json that describe files or state we rewrite ourselves
_DROP = {"added_tokens_decoder", "tokenizer_file", "vocab_file", "merges_file", "name_or_path", "auto_map"}


def save(tok: Tokenizer, spec: TokenizerSpec, directory: pathlib.Path) -> pathlib.Path:
    """Save ``tok`` to ``directory`` (created if needed), all or nothing (`isoform.staging`: a failed
    save leaves the directory as it was), and return the directory."""
    spec.family.check_save()
    try:
        with staged_directory(directory) as stage:
            _write_files(tok, spec, stage)
    except OSError as e:
        raise TokenizerError(f"cannot write tokenizer files to {directory}: {e}") from e
    return directory


def _write_files(tok: Tokenizer, spec: TokenizerSpec, directory: pathlib.Path) -> None:
    backend = type(tok.backend).from_str(spec.family.serialized(tok.backend))
    backend.no_padding()
    backend.no_truncation()
    backend.save(str(directory / "tokenizer.json"))

    config: dict[str, Any] = {k: v for k, v in spec.config.items() if k not in _DROP}
    backend_class = spec.tokenizer_class == "TokenizersBackend"  # e.g. Mistral's LlamaTokenizer
    if spec.source != "tokenizer.json" or not config.get("tokenizer_class") or backend_class:
        # the pipeline now lives in tokenizer.json: ask transformers to load that file as it is
        own = None if backend_class else config.get("tokenizer_class")
        config["tokenizer_class"] = own or "TokenizersBackend"
    config["added_tokens_decoder"] = {
        str(i): _token_dict(t) for i, t in sorted(backend.get_added_tokens_decoder().items())
    }
    config.update(spec.special)
    config.pop("additional_special_tokens", None)
    config["extra_special_tokens"] = list(spec.extra_special)
    config["model_max_length"] = (
        tok.model_max_length if tok.model_max_length < VERY_LARGE_INTEGER else VERY_LARGE_INTEGER
    )
    config["padding_side"] = tok.padding_side
    config["truncation_side"] = tok.truncation_side
    config["model_input_names"] = list(tok.model_input_names)
    config["clean_up_tokenization_spaces"] = tok.clean_up_tokenization_spaces
    config.pop("chat_template", None)
    if isinstance(tok.chat_template, str):  # transformers' layout: one template as chat_template.jinja
        (directory / chat.FILE).write_text(tok.chat_template, encoding="utf-8")
    elif isinstance(tok.chat_template, dict):
        config["chat_template"] = [{"name": k, "template": v} for k, v in tok.chat_template.items()]
    spec.family.save_files(tok, config, directory)
    _write(directory / "tokenizer_config.json", config)
    special_map: dict[str, Any] = dict(spec.special)
    if spec.extra_special:
        special_map["additional_special_tokens"] = list(spec.extra_special)
    _write(directory / "special_tokens_map.json", special_map)


def _token_dict(token: Any) -> dict[str, Any]:
    return {
        "content": token.content,
        "lstrip": token.lstrip,
        "normalized": token.normalized,
        "rstrip": token.rstrip,
        "single_word": token.single_word,
        "special": token.special,
    }


def _write(path: pathlib.Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
