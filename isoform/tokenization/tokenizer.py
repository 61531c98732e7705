"""``Tokenizer``: load any Hugging Face tokenizer format and encode/decode like transformers."""

from __future__ import annotations

import operator
import os
import pathlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer as Backend

from isoform.errors import HubError, TokenizerError
from isoform.tokenization.batch import BatchEncoding, batch_inputs, check_text, ints, to_tensors
from isoform.tokenization.loading import SPECIAL_KEYS, VERY_LARGE_INTEGER, TokenizerSpec, load_spec
from isoform.tokenization.seq2seq import Seq2SeqMixin

TRUNCATION = ("longest_first", "only_first", "only_second")
SIDES = ("right", "left")
NO_LIMIT = 2**63  # a length at least this long cannot be reached: no truncation
MAX_PAD_LENGTH = 1 << 24  # padding beyond this many tokens a row is refused (it would exhaust memory)


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
        self.chat_template = spec.chat_template  # a Jinja template, or several by name (see apply_chat_template)
        # Held while the backend is configured for one call and encodes (and while ``as_target``
        # switches pipelines): the backend's truncation / padding are object state of ``tokenizers``.
        self._lock = threading.RLock()
        self._prepared: dict[tuple, tuple] = {}  # checked call options -> _prepare's result

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
        self._backend = backend
        self._prepared = {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_prepared")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.RLock(), _prepared={})

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
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, in transformers' order (the chat template sees them)."""
        special = self._spec.special
        return {k: special[k] for k in SPECIAL_KEYS if k in special}

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
        """Token strings of ``text`` (and ``pair``): never truncated or padded, as in transformers."""
        text, pair = check_text(text), check_text(pair, "pair")
        add_special_tokens = flag(add_special_tokens, "add_special_tokens")
        with self._lock:  # the backend holds no call's truncation / padding outside the lock
            try:
                enc = self.backend.encode(text, pair, add_special_tokens=add_special_tokens)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # tokenizers raises bare Exceptions and Rust panics
                raise TokenizerError(f"tokenization failed: {e}") from e
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
        padding_side: str | None = None,
        is_split_into_words: bool = False,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
    ) -> BatchEncoding:
        add_special_tokens = flag(add_special_tokens, "add_special_tokens")
        is_split_into_words = flag(is_split_into_words, "is_split_into_words")
        batched, inputs = batch_inputs(text, text_pair, is_split_into_words)
        pairs = bool(inputs) and isinstance(inputs[0], tuple)
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        with self._lock:  # this call's truncation / padding, set on the backend and taken off again
            strategy, limit, truncating, padding_to = self._options(
                padding, truncation, max_length, stride, pad_to_multiple_of, padding_side,
                add_special_tokens, pairs,
            )  # fmt: skip
            backend = self.backend
            try:
                if truncating is not None:
                    backend.enable_truncation(**truncating)  # refuses a stride its specials leave no room for
                if padding_to is not None:
                    backend.enable_padding(**padding_to)
                encodings = backend.encode_batch(
                    inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_split_into_words
                )
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # tokenizers raises bare Exceptions, even Rust panics
                raise TokenizerError(self._failure(str(e), strategy, limit)) from e
            finally:
                if truncating is not None:
                    backend.no_truncation()
                if padding_to is not None:
                    backend.no_padding()
            # the family's amendments read the pipeline that encoded (Marian's side): still in the lock
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

    def _options(
        self,
        padding: Any,
        truncation: Any,
        max_length: Any,
        stride: Any,
        pad_to_multiple_of: Any,
        padding_side: Any,
        add_special_tokens: bool,
        pairs: bool,
    ) -> tuple[str | None, int, dict[str, Any] | None, dict[str, Any] | None]:
        """`_prepare`, remembered for options seen before (by value and type: ``1`` is not ``True``)
        and the attributes they are read with; forgotten when special tokens or the pipeline change."""
        key = (
            padding, type(padding), truncation, type(truncation), max_length, type(max_length), stride,
            type(stride), pad_to_multiple_of, type(pad_to_multiple_of), padding_side, add_special_tokens,
            pairs, self.model_max_length, self.padding_side, self.truncation_side,
        )  # fmt: skip
        try:
            found = self._prepared.get(key)
        except TypeError:  # an unhashable option (a list, ...): refused below
            key = found = None
        if found is None:
            found = self._prepare(
                padding, truncation, max_length, stride, pad_to_multiple_of, padding_side, add_special_tokens, pairs
            )
            if key is not None:
                if len(self._prepared) >= 64:
                    self._prepared = {}
                self._prepared[key] = found
        return found

    def _prepare(
        self,
        padding: Any,
        truncation: Any,
        max_length: Any,
        stride: Any,
        pad_to_multiple_of: Any,
        padding_side: Any,
        add_special_tokens: bool,
        pairs: bool,
    ) -> tuple[str | None, int, dict[str, Any] | None, dict[str, Any] | None]:
        """Check one call's truncation and padding options, as transformers reads them: (truncation
        strategy, length limit, ``enable_truncation`` / ``enable_padding`` arguments or None for off)."""
        if isinstance(padding, bool):
            padding = "longest" if padding else None
        elif isinstance(padding, str) and padding in ("longest", "max_length", "do_not_pad"):
            padding = None if padding == "do_not_pad" else "longest" if padding == "longest" else "max_length"
        else:
            raise TokenizerError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r:.80}")
        if truncation is None:
            truncation = max_length is not None and padding is None
        if isinstance(truncation, bool):
            truncation = "longest_first" if truncation else None
        elif isinstance(truncation, str) and truncation in (*TRUNCATION, "do_not_truncate"):
            truncation = next((t for t in TRUNCATION if t == truncation), None)
        else:
            raise TokenizerError(
                f"truncation must be True, False or one of {TRUNCATION}, got {truncation!r:.80}"
            )
        max_length = count(max_length, "max_length")
        stride = count(stride, "stride", none=False)
        pad_to_multiple_of = count(pad_to_multiple_of, "pad_to_multiple_of") or None
        limit = self.model_max_length if max_length is None else max_length
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise TokenizerError(f"model_max_length must be a non-negative int, got {limit!r:.80}")
        length = limit if padding == "max_length" else None  # before a length no text reaches is dropped
        if limit >= NO_LIMIT:
            limit = VERY_LARGE_INTEGER
        truncating = padding_to = None
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
            direction = side(self.truncation_side, "truncation_side")
            truncating = {"max_length": limit, "stride": stride, "strategy": truncation, "direction": direction}
        if padding is not None:
            direction = side(self.padding_side if padding_side is None else padding_side, "padding_side")
            pad = self._spec.special.get("pad_token")
            pad_id = None if pad is None else self.backend.token_to_id(pad)
            if pad_id is None:
                raise TokenizerError(
                    "padding was requested but this tokenizer has no pad token: pass padding=False, "
                    "or set one (e.g. tok.pad_token = tok.eos_token)"
                )
            if length is not None and max_length is None and length >= VERY_LARGE_INTEGER:
                raise TokenizerError(
                    "padding='max_length' needs max_length= (the tokenizer has no model_max_length)"
                )
            for name, value in (("max_length", length), ("pad_to_multiple_of", pad_to_multiple_of)):
                if value is not None and value > MAX_PAD_LENGTH:
                    raise TokenizerError(
                        f"padding to {name}={value} is refused: rows of more than {MAX_PAD_LENGTH} tokens "
                        "would not fit in memory"
                    )
            if truncating is not None and pad_to_multiple_of and limit % pad_to_multiple_of:
                raise TokenizerError(
                    f"truncation and padding are both on, but the truncation length ({limit}) is not a "
                    f"multiple of pad_to_multiple_of ({pad_to_multiple_of})"
                )
            padding_to = {
                "direction": direction, "pad_id": pad_id, "pad_type_id": 0, "pad_token": pad,
                "length": length, "pad_to_multiple_of": pad_to_multiple_of,
            }  # fmt: skip
        return truncation, limit, truncating, padding_to

    def _failure(self, error: str, truncation: str | None, limit: int) -> str:
        """A TokenizerError message for an error of the ``tokenizers`` library during this call."""
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
        """``tok.pad_token = tok.eos_token`` / ``tok.pad_token_id = 2`` set a special token, as in transformers:
        padding, ``*_token_id`` and chat templates use it from then on (the special-token template a
        tokenizer encodes with is not rebuilt, as in transformers). A token that is not in the vocabulary is
        refused (TokenizerError), where transformers keeps it and pads with the unk id (or 0)."""
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
        self._prepared = {}

    def set_pad_token(self, token: str) -> None:
        """Use ``token`` (already in the vocabulary, e.g. the eos token) for padding: ``tok.pad_token = token``."""
        self.pad_token = token

    def apply_chat_template(
        self,
        conversation: Sequence[Any],
        tools: list[dict] | None = None,
        documents: list[dict] | None = None,
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = True,
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        return_dict: bool = True,
        tokenizer_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Render ``conversation`` (a list of ``{"role", "content", ...}`` messages, or a batch of such lists)
        with the tokenizer's chat template (``chat_template.jinja`` or ``chat_template`` of
        tokenizer_config.json; ``chat_template=`` a template or a template's name), as transformers does:
        the template sees ``messages``, ``tools``, ``documents``, ``add_generation_prompt``, the special
        tokens (``bos_token``, ...) and ``kwargs``. ``tokenize=False``: the text; else the text encoded without
        special tokens (the template writes them): a `BatchEncoding`, or its ``input_ids`` when
        ``return_dict=False``. Tools must be JSON schemas (transformers also derives them from functions)."""
        from isoform.tokenization import chat

        for name in ("return_assistant_tokens_mask", "sanitize_control_tokens"):
            if kwargs.pop(name, False):
                raise TokenizerError(f"apply_chat_template({name}=True) is not implemented in isoform")
        if tools is not None and not all(isinstance(t, dict) for t in tools):
            raise TokenizerError("tools must be JSON schema dicts (isoform does not derive schemas from functions)")
        if documents is not None and not all(isinstance(d, dict) for d in documents):
            raise TokenizerError("documents must be dicts with 'title' and 'text' keys")
        template = chat.select(self.chat_template, chat_template, tools)
        variables = {**self.special_tokens_map, **kwargs, "tools": tools, "documents": documents}
        texts, batched = chat.render(
            template, conversation, add_generation_prompt=flag(add_generation_prompt, "add_generation_prompt"),
            continue_final_message=flag(continue_final_message, "continue_final_message"), variables=variables,
        )  # fmt: skip
        if not flag(tokenize, "tokenize"):
            return texts if batched else texts[0]
        out = self(
            texts if batched else texts[0], padding=padding, truncation=truncation, max_length=max_length,
            add_special_tokens=False, return_tensors=return_tensors, **(tokenizer_kwargs or {}),
        )  # fmt: skip
        return out if flag(return_dict, "return_dict") else out["input_ids"]

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
        ids = ints(ids)
        if ids and not 0 <= min(ids) <= max(ids) < 2**32:
            bad = next(i for i in ids if not 0 <= i < 2**32)
            raise TokenizerError(f"token ids must be non-negative 32-bit ints, got {bad}")
        with self._lock:  # ``as_target`` may switch the pipeline in another thread
            text = self._family.decode(self, ids, skip_special_tokens, **options)
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


def flag(value: Any, name: str) -> bool:
    """``value`` of the boolean option ``name`` (a bool or NumPy bool); else a TokenizerError."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TokenizerError(f"{name} must be True or False, got {value!r:.80}")


def count(value: Any, name: str, none: bool = True) -> int | None:
    """``value`` of the option ``name``: a non-negative int (or None where ``none``); else a TokenizerError."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__") or operator.index(value) < 0:
        raise TokenizerError(f"{name} must be a non-negative int, got {value!r:.80}")
    return operator.index(value)


def side(value: Any, name: str) -> str:
    """``value`` of ``padding_side`` / ``truncation_side``: ``"right"`` or ``"left"``; else a TokenizerError."""
    if isinstance(value, str) and value in SIDES:
        return str(value)
    raise TokenizerError(f"{name} must be 'right' or 'left', got {value!r:.80}")


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation and contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't")):
        text = text.replace(a, b)
    for a, b in ((" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text

