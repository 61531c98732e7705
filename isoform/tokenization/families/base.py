"""The tokenizer family protocol: what one family declares so `load_spec` can read its files.

A family module holds a `Family` subclass registered with ``@register``. Class attributes are its
data; families that differ only in data are ``variants`` of one class (name -> attribute overrides),
each registered under its own name. What a family declares:

- detection: ``names`` (``tokenizer_class`` without ``Tokenizer``/``Fast``, lowercased, or a
  ``config.json`` ``model_type``), ``files`` (tokenizer files it is the default family for when the
  configs name none), ``backend_files`` (files it reads for transformers' generic TokenizersBackend);
- conversion: ``formats`` (files it converts) and `convert`; a file it does not convert is read by the
  format's own family (``fallback``: the SentencePiece kind it reads for others, ``spm`` or ``spm-bpe``);
- transformers-level data: ``special`` (default special tokens, in the class's order), ``template``,
  ``mask_lstrip``, ``defaults`` (tokenizer_config defaults), ``model_max_length``, ``padding_side``,
  ``input_names`` (`model_input_names`), extra special tokens (`extra_special`);
- behaviour unlike a fast tokenizer, as hooks: per-tokenizer state (`setup`, e.g. ``languages``),
  encode outputs (`amend`, `tokens`), `decode` (and its ``decode_options``), the target side (`target`),
  saving (`check_save`, `save_files`).

A worked example, a WordPiece family whose ``[CLS] A [SEP]`` template is data::

    @register
    class WordPiece(Family):
        formats = ("vocab.txt",)
        variants = {
            "bert": {"names": ("bert", "electra"), "files": ("vocab.txt",), "special": BERT_SPECIAL,
                     "template": CLS_SEP, "input_names": WITH_TYPES},
            "mpnet": {"names": ("mpnet",), "special": MPNET_SPECIAL, "template": RobertaTemplate()},
        }

        def convert(self, src: Source) -> Converted:
            return Converted(wordpiece(read_wordpiece_vocab(src.path), src.options, src.special))

Each registered family is a prototype; `get` hands out a copy per tokenizer, which holds that
tokenizer's state (language codes, Marian's target pipeline).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

from tokenizers import AddedToken
from tokenizers import Tokenizer as Backend

from isoform.tokenization.files import SPM_FILES, read_spm
from isoform.tokenization.languages import Languages
from isoform.tokenization.templates import BOS_EOS, PostProcessor

if TYPE_CHECKING:
    from isoform.tokenization.tokenizer import Tokenizer

WITH_TYPES = ("input_ids", "token_type_ids", "attention_mask")
WITHOUT_TYPES = ("input_ids", "attention_mask")
TYPES_LAST = ("input_ids", "attention_mask", "token_type_ids")  # DeBERTa's order
REGISTRY: dict[str, Family] = {}
_UNIQUE = ("names", "files", "backend_files", "fallback")  # each value selects one family


@dataclass
class Source:
    """What a family converts: the file ``found`` in ``directory`` and the settings read with it."""

    directory: pathlib.Path
    found: str
    options: dict[str, Any]  # tokenizer_config.json over the family's defaults
    special: dict[str, str]  # role -> token; a family may add the model's own (SentencePiece's)

    @property
    def path(self) -> pathlib.Path:
        return self.directory / self.found

    @functools.cached_property
    def proto(self) -> Any:
        """The parsed SentencePiece model (for SentencePiece files)."""
        return read_spm(self.path)


class Converted(NamedTuple):
    """A converted pipeline and the tokens to add to it before the configured ones."""

    backend: Backend
    pieces: Sequence[AddedToken] = ()


class Family:
    """One tokenizer family: detection, conversion and transformers-level data. See the module doc."""

    name: str = ""
    variants: ClassVar[dict[str, dict[str, Any]]] = {}
    names: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    backend_files: tuple[str, ...] = ()
    backend_classes: tuple[str, ...] = ()  # tokenizer_class keys meaning the generic TokenizersBackend
    backend_model_types: tuple[str, ...] = ()  # model_types AutoTokenizer loads with TokenizersBackend
    formats: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    special: dict[str, str] = {}
    template: PostProcessor = BOS_EOS
    mask_lstrip: bool = False
    defaults: dict[str, Any] = {}
    model_max_length: int | None = None
    padding_side: str = "right"
    input_names: tuple[str, ...] = WITHOUT_TYPES
    languages: Languages | None = None  # mBART / M2M100 language codes, per tokenizer
    decode_options: tuple[str, ...] = ()  # keyword arguments `decode` takes beyond skip_special_tokens

    def __init__(self, name: str, **data: Any) -> None:
        self.name = name
        for key, value in data.items():
            if key == "variants" or not hasattr(type(self), key):
                raise TypeError(f"{type(self).__name__} has no family attribute {key!r}")
            setattr(self, key, value)

    # -- loading ------------------------------------------------------------------------------
    def reader(self, directory: pathlib.Path, found: str) -> Family:
        """The family that converts ``found``: this one if it reads that file, else the family of the
        file's format (a SentencePiece model by its kind: ``spm-bpe`` as a BPE reader, ``spm`` else)."""
        if found in self.formats:
            return self
        key = found
        if found in SPM_FILES:
            key = "spm-bpe" if read_spm(directory / found).trainer_spec.model_type == 2 else "spm"
        return get(_owner("fallback", key) or _owner("files", found))

    def setup(self, options: dict[str, Any]) -> None:
        """Per-tokenizer state from the options (e.g. ``languages``); runs before conversion."""

    def convert(self, src: Source) -> Converted:
        """The ``tokenizers`` pipeline of ``src`` (no post-processor: that is the ``template``)."""
        raise NotImplementedError(f"the {self.name} family converts no tokenizer files")

    def pipelines(self, backend: Backend) -> tuple[Backend, ...]:
        """Every pipeline the tokenizer encodes with (Marian: source and target), to finish alike."""
        return (backend,)

    def finish(self, backend: Backend) -> None:
        """Install on a pipeline, converted or read from tokenizer.json, what tokenizer.json cannot
        hold (RoFormer's jieba pre-tokenizer)."""

    def serialized(self, backend: Backend) -> str:
        """The pipeline as the tokenizer.json text its transformers class saves."""
        return backend.to_str()

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        """The extra special tokens: ``configured`` (or the model's control pieces, ``extra``) plus
        those the transformers class adds itself."""
        return extra

    def model_input_names(self, tokenizer_class: str) -> list[str]:
        """``model_input_names`` when tokenizer_config.json has none."""
        return list(self.input_names)

    # -- encoding and decoding ----------------------------------------------------------------
    def tokens(self, tok: Tokenizer, enc: Any, item: Any) -> list[str]:
        """``tokenize``'s tokens of the encoding ``enc`` of ``item`` (a text or a pair)."""
        return enc.tokens

    def amend(
        self, tok: Tokenizer, data: dict[str, Any], rows: list, items: list, *, pairs: bool, words: bool,
        add_special_tokens: bool,
    ) -> None:  # fmt: skip
        """Adjust a call's outputs ``data`` (one entry per row of ``rows``, encoding ``items``)."""

    def decode(self, tok: Tokenizer, ids: list[int], skip_special_tokens: bool) -> str:
        return tok.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    @contextlib.contextmanager
    def target(self, tok: Tokenizer) -> Iterator[None]:
        """Within the block ``tok`` encodes target text (Marian: with the target pipeline)."""
        yield

    def check_save(self) -> None:
        """Raise TokenizerError when the tokenizer cannot be written as one tokenizer.json."""

    def save_files(self, tok: Tokenizer, config: dict[str, Any], directory: pathlib.Path) -> None:
        """Amend the ``tokenizer_config.json`` about to be written and write the family's own files
        (those its transformers class reads instead of tokenizer.json)."""


class Slow(Family):
    """A family whose transformers class is a slow (Python) SentencePiece tokenizer: pair token types
    and decoding as that class gives them."""

    spaced: bool = False  # Marian: a space after each special token, a ``▁`` left over is a space

    def amend(
        self, tok: Tokenizer, data: dict[str, Any], rows: list, items: list, *, pairs: bool, words: bool,
        add_special_tokens: bool,
    ) -> None:  # fmt: skip
        if pairs and "token_type_ids" in data:
            data["token_type_ids"] = [_slow_pair_types(e) for e in rows]

    def decode(self, tok: Tokenizer, ids: list[int], skip_special_tokens: bool) -> str:
        """``convert_tokens_to_string``: special tokens verbatim, each run of pieces between them
        decoded on its own, the whole stripped."""
        special, run_decode = set(tok.all_special_tokens), self.decode_run(tok)
        out, run = "", []
        for token in tok.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens):
            if token in special:
                out += run_decode(run) + token + (" " if self.spaced else "")
                run = []
            else:
                run.append(token)
        out += run_decode(run)
        return (out.replace("\u2581", " ") if self.spaced else out).strip()

    def decode_run(self, tok: Tokenizer) -> Any:
        """What decodes a run of pieces."""
        return tok.backend.decoder.decode


def _slow_pair_types(enc: Any) -> list[int]:
    """1 for as many of the last real (unpadded) positions as the second text has tokens, else 0
    (so the types straddle the special tokens, as the slow classes give them)."""
    second = enc.sequence_ids.count(1)
    real = [i for i, m in enumerate(enc.attention_mask) if m]
    ones = set(real[len(real) - second :]) if second else set()
    return [int(i in ones) for i in range(len(enc.ids))]


F = TypeVar("F", bound=type[Family])


def register(cls: F) -> F:
    """Class decorator: register one family per entry of ``cls.variants`` (or one, ``cls.name``)."""
    for name, data in (cls.__dict__.get("variants") or {cls.name: {}}).items():
        family = cls(name, **data)
        if name in REGISTRY:
            raise ValueError(f"tokenizer family {name!r} is registered twice")
        for attribute in _UNIQUE:
            for value in getattr(family, attribute):
                if _owner(attribute, value) is not None:
                    raise ValueError(f"{attribute} {value!r} of {name!r} is {_owner(attribute, value)!r}'s")
        REGISTRY[name] = family
    return cls


def get(name: str) -> Family:
    """A fresh copy of the registered family ``name`` (to hold one tokenizer's state)."""
    return copy.copy(REGISTRY[name])


def detect(found: str, config: dict[str, Any], model_config: dict[str, Any]) -> tuple[Family, str]:
    """(family, tokenizer class) for the file ``found`` and the configs, as AutoTokenizer picks.

    ``tokenizer_class`` wins over ``model_type``; an unknown class, or a ``tokenizer.json`` with none,
    goes by the file found. The class is ``""`` when AutoTokenizer goes by model_type."""
    cls = str(config.get("tokenizer_class") or "")
    key = cls.removesuffix("Fast").removesuffix("Tokenizer").lower()
    model_type = str(model_config.get("model_type") or "").lower()
    if _owner("backend_model_types", model_type) or (cls and _owner("backend_classes", key)):
        return get(_owner("backend_files", found) or _owner("files", found)), "TokenizersBackend"
    if cls and _owner("names", key):
        return get(_owner("names", key)), cls
    if cls or found == "tokenizer.json":
        return get(_owner("files", found)), cls
    return get(_owner("names", model_type) or _owner("files", found)), cls


def _owner(attribute: str, value: str) -> str | None:
    """The registered family whose ``attribute`` holds ``value``."""
    return next((name for name, f in REGISTRY.items() if value in getattr(f, attribute)), None)
