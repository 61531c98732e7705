"""``Tokenizer``: load any Hugging Face tokenizer format and encode/decode like transformers."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer as Backend

from isoform.errors import HubError, TokenizerError
from isoform.tokenization.batch import BatchEncoding, batch_inputs, check_text, ints, to_tensors
from isoform.tokenization.loading import SPECIAL_KEYS, VERY_LARGE_INTEGER, TokenizerSpec, load_spec
from isoform.tokenization.seq2seq import Seq2SeqMixin

TRUNCATION = ("longest_first", "only_first", "only_second")


class Tokenizer(Seq2SeqMixin):
    """A tokenizer backed by the Rust ``tokenizers`` library, with the call API of transformers.

    ``Tokenizer.load(directory)`` reads ``tokenizer.json``, WordPiece ``vocab.txt``, byte-level
    BPE ``vocab.json`` + ``merges.txt`` or a SentencePiece model, plus ``tokenizer_config.json`` and
    ``special_tokens_map.json``. Ids, masks, offsets, overflow windows and decoding match
    ``transformers.AutoTokenizer`` on the same files.

    Seq2seq additions: ``tok(text, text_target=...)`` adds ``labels``; multilingual tokenizers (mBART,
    M2M100) take ``src_lang``/``tgt_lang`` (at load or as attributes) and map language codes to the
    ids ``generate(forced_bos_token_id=...)`` needs with ``get_lang_id`` / ``lang_code_to_id``.
    """

    def __init__(self, spec: TokenizerSpec) -> None:
        self._spec = spec
        self._family = spec.family
        self.backend = spec.backend
        self.model_max_length = spec.model_max_length
        self.padding_side = spec.padding_side
        self.truncation_side = spec.truncation_side
        self.model_input_names = list(spec.model_input_names)
        self.clean_up_tokenization_spaces = spec.clean_up_tokenization_spaces
        self._settings: tuple | None = None

    @classmethod
    def load(
        cls, directory: str | os.PathLike, *, src_lang: str | None = None, tgt_lang: str | None = None
    ) -> Tokenizer:
        """Load the tokenizer files of a local ``directory`` (``isoform.Tokenizer.load`` also takes
        aliases and Hugging Face repo ids). ``src_lang``/``tgt_lang`` override the configured
        languages of mBART / M2M100 tokenizers."""
        path = pathlib.Path(directory).expanduser()
        if not path.is_dir():
            name = str(directory)
            if path.exists():
                raise HubError(f"{name!r} is a file, not a directory: pass the directory that holds it")
            raise HubError(f"local directory {name!r} does not exist (resolved to {path.absolute()})")
        overrides = {k: v for k, v in (("src_lang", src_lang), ("tgt_lang", tgt_lang)) if v is not None}
        return cls(load_spec(path, overrides))

    @property
    def backend(self) -> Backend:
        """The ``tokenizers`` pipeline encoding now (Marian's target one within ``as_target``)."""
        return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._backend, self._settings = backend, None

    # ----- vocabulary -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary, without added tokens (as transformers)."""
        return self.backend.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    @property
    def special_tokens(self) -> dict[str, str]:
        """Named special tokens, e.g. ``{"cls_token": "[CLS]", ...}``."""
        return dict(self._spec.special)

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (in transformers' order: bos, eos, unk, ...), then the extra ones."""
        special = self._spec.special
        named = list(dict.fromkeys(special[k] for k in SPECIAL_KEYS if k in special))
        return named + [t for t in self._spec.extra_special if t not in named]

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    def __getattr__(self, name: str) -> Any:
        if name in SPECIAL_KEYS:
            return self._spec.special.get(name)
        if name.endswith("_id") and name[:-3] in SPECIAL_KEYS:
            token = self._spec.special.get(name[:-3])
            return None if token is None else self.backend.token_to_id(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a token (or list of tokens); unknown tokens map to the unk id, or ``None`` without one."""
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return found if found is not None else self.unk_token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int], skip_special_tokens: bool = False) -> Any:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.backend.id_to_token(i) for i in ints(ids) if i not in special]

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        enc = self.backend.encode(check_text(text), check_text(pair), add_special_tokens=add_special_tokens)
        return self._family.tokens(self, enc, text if pair is None else (text, pair))

    # ----- encoding -------------------------------------------------------------------------------
    def _encode(
        self,
        text: str | Sequence[str] | Sequence[tuple[str, str]],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        is_split_into_words: bool = False,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
    ) -> BatchEncoding:
        batched, inputs = batch_inputs(text, text_pair, is_split_into_words)
        pairs = bool(inputs) and isinstance(inputs[0], tuple)
        self._configure(
            padding, truncation, max_length, stride, pad_to_multiple_of, add_special_tokens, pairs
        )
        try:
            encodings = self.backend.encode_batch(
                inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
            )
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # tokenizers raises bare Exceptions, even Rust panics (stride too large)
            raise TokenizerError(self._failure(str(e))) from e

        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        rows, mapping = [], []
        for i, enc in enumerate(encodings):
            rows.append(enc)
            mapping.append(i)
            if return_overflowing_tokens:
                rows.extend(enc.overflowing)
                mapping.extend([i] * len(enc.overflowing))
        data: dict[str, Any] = {"input_ids": [e.ids for e in rows]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in rows]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in rows]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in rows]
        self._family.amend(
            self, data, rows, [inputs[m] for m in mapping], pairs=pairs, words=is_split_into_words,
            add_special_tokens=add_special_tokens,
        )  # fmt: skip
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in rows]
        if return_length:
            data["length"] = [len(e.ids) for e in rows]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping
        if return_tensors is not None:
            data = to_tensors(data, return_tensors)
        elif not batched and not return_overflowing_tokens:
            data = {k: v[0] for k, v in data.items()}
        return BatchEncoding(data, rows)

    def encode(self, text: str, text_pair: str | None = None, **kwargs: Any) -> list[int]:
        """Ids of one text (or pair); takes the same keyword arguments as ``__call__``."""
        if not isinstance(text, str) and not kwargs.get("is_split_into_words"):
            raise TokenizerError(
                f"encode() takes one text (str), got {type(text).__name__}; use tok(list) for batches"
            )
        return self(text, text_pair, **kwargs)["input_ids"]

    def _configure(
        self,
        padding: bool | str,
        truncation: bool | str | None,
        max_length: int | None,
        stride: int,
        pad_to_multiple_of: int | None,
        add_special_tokens: bool,
        pairs: bool,
    ) -> None:
        """Set the backend's truncation and padding for this call (cached between identical calls)."""
        if truncation is None:
            truncation = (
                "longest_first" if max_length is not None and padding in (False, "do_not_pad") else False
            )
        if truncation is True:
            truncation = "longest_first"
        if truncation in (False, "do_not_truncate"):
            truncation = None
        elif truncation not in TRUNCATION:
            raise TokenizerError(f"truncation must be True, False or one of {TRUNCATION}, got {truncation!r}")
        if padding is True:
            padding = "longest"
        if padding in (False, "do_not_pad"):
            padding = None
        elif padding not in ("longest", "max_length"):
            raise TokenizerError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 0):
            raise TokenizerError(f"max_length must be a non-negative int, got {max_length!r}")
        limit = max_length if max_length is not None else self.model_max_length
        settings = (padding, truncation, limit, stride, pad_to_multiple_of, add_special_tokens, pairs)
        if settings == self._settings:
            return
        if truncation is not None and limit < VERY_LARGE_INTEGER:
            needed = self.backend.num_special_tokens_to_add(pairs) if add_special_tokens else 0
            if limit < needed:
                raise TokenizerError(
                    f"max_length={limit} is too small: the special tokens alone need {needed} positions "
                    f"for {'a pair' if pairs else 'one sequence'}"
                )
            if stride and stride >= limit - needed:
                raise TokenizerError(
                    f"stride={stride} must be smaller than max_length minus special tokens ({limit - needed})"
                )
            self.backend.enable_truncation(
                limit, stride=stride, strategy=truncation, direction=self.truncation_side
            )
        else:
            self.backend.no_truncation()
        if padding is None:
            self.backend.no_padding()
        else:
            pad = self._spec.special.get("pad_token")
            pad_id = None if pad is None else self.backend.token_to_id(pad)
            if pad_id is None:
                raise TokenizerError(
                    "padding was requested but this tokenizer has no pad token: pass padding=False, "
                    "or set one (e.g. tok.pad_token = tok.eos_token)"
                )
            length = limit if padding == "max_length" and limit < VERY_LARGE_INTEGER else None
            if padding == "max_length" and length is None:
                raise TokenizerError(
                    "padding='max_length' needs max_length= (the tokenizer has no model_max_length)"
                )
            self.backend.enable_padding(
                direction=self.padding_side, pad_id=pad_id, pad_type_id=0, pad_token=pad,
                length=length, pad_to_multiple_of=pad_to_multiple_of,
            )  # fmt: skip
        self._settings = settings

    def _failure(self, error: str) -> str:
        """A TokenizerError message for an error of the ``tokenizers`` library during this call."""
        _, truncation, limit, *_ = self._settings or (None, None, None)
        if "too short to respect" in error and truncation in ("only_first", "only_second"):
            which = "first" if truncation == "only_first" else "second"
            return (
                f"truncation={truncation!r} cannot cut a pair to max_length={limit}: its {which} text has "
                "too few tokens to remove (transformers refuses too); use truncation='longest_first' or a "
                "larger max_length"
            )
        if "Second sequence not provided" in error:
            return "truncation='only_second' needs text pairs; a single text has no second sequence"
        return f"tokenization failed: {error}"

    def __setattr__(self, name: str, value: Any) -> None:
        """``tok.pad_token = tok.eos_token`` / ``tok.pad_token_id = 2`` set a special token, as in transformers."""
        role = name.removesuffix("_id")
        if role not in SPECIAL_KEYS or "_spec" not in self.__dict__:
            super().__setattr__(name, value)
            return
        token = value
        if value is not None and role != name:
            token = self.backend.id_to_token(ints(value)[0])
            if token is None:
                raise TokenizerError(f"{name}={value!r} is not a token id of this tokenizer")
        if token is None:
            self._spec.special.pop(role, None)
        elif not isinstance(token, str) or self.backend.token_to_id(token) is None:
            raise TokenizerError(f"{role} {token!r} is not in the vocabulary")
        else:
            self._spec.special[role] = token
        self._settings = None

    def set_pad_token(self, token: str) -> None:
        """Use ``token`` (already in the vocabulary, e.g. the eos token) for padding: ``tok.pad_token = token``."""
        self.pad_token = token

    # ----- decoding -------------------------------------------------------------------------------
    def decode(
        self,
        ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **options: Any,
    ) -> str:
        """Text of one sequence of ids (list, numpy array or framework tensor). ``options`` are those of
        the family's decoding (Wav2Vec2's CTC: ``group_tokens``, ``spaces_between_special_tokens``)."""
        unknown = sorted(set(options) - set(self._family.decode_options))
        if unknown:
            takes = ", ".join(self._family.decode_options) or "none"
            name = self._family.name
            raise TokenizerError(
                f"decode() of a {name} tokenizer takes no {', '.join(unknown)} (options: {takes})"
            )
        text = self._family.decode(self, ints(ids), skip_special_tokens, **options)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces and type(self.backend.model).__name__ != "BPE":
            text = clean_up_tokenization(text)
        return text

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **options: Any,
    ) -> list[str]:
        """``decode`` each row of ``sequences`` (with the same ``options``)."""
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        return [self.decode(r, skip_special_tokens, clean_up_tokenization_spaces, **options) for r in rows]

    # ----- saving ---------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> pathlib.Path:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``."""
        from isoform.tokenization.saving import save

        return save(self, self._spec, pathlib.Path(directory))

    def __repr__(self) -> str:
        return (
            f"Tokenizer(family={self._family.name!r}, source={self._spec.source!r}, vocab_size={self.vocab_size}, "
            f"added={len(self) - self.vocab_size}, model_max_length={self.model_max_length})"
        )


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation and contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't")):
        text = text.replace(a, b)
    for a, b in ((" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text

