"""Marian (``source.spm`` + ``target.spm`` + ``vocab.json``): one Rust pipeline per side.

transformers' ``MarianTokenizer`` segments with the side's SentencePiece model (source for inputs,
target for ``labels``) and looks each piece up in the shared ``vocab.json``. Each side here is a
Unigram listing ``vocab.json`` in id order: the side's pieces carry their SentencePiece scores, the
other side's pieces a score no segmentation picks, so the Rust pipeline emits ``vocab.json`` ids.
Characters the side's model lacks become a sentinel first, so runs of them are one ``<unk>`` as in
SentencePiece; a run whose text is a ``vocab.json`` entry gets that entry's id (``UnknownRuns``), as
the slow tokenizer's lookup gives. Decoding joins pieces with the source model, as it does too.
"""

from __future__ import annotations

import contextlib
import pathlib
import unicodedata
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tokenizers import Regex, normalizers
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError
from isoform.tokenization.families.base import Converted, Slow, Source, register
from isoform.tokenization.families.sentencepiece import SentencePiece
from isoform.tokenization.files import SPIECE, read_json, read_spm
from isoform.tokenization.templates import EOS

if TYPE_CHECKING:
    from isoform.tokenization.tokenizer import Tokenizer

UNUSED_SCORE = -1e6  # pieces of the other side's model: never chosen over the side's own pieces
SIDES = {"source": "source.spm", "target": "target.spm"}
SENTINEL = "\ue000"  # a private-use character: no piece has it, so it is always unknown


@register
class Marian(Slow, SentencePiece):
    """Marian (a slow class in transformers): ``A </s>``, one pipeline per side, ``vocab.json`` ids.

    Read from a ``tokenizer.json`` it has one pipeline and no unknown-run fix-ups; saving a tokenizer
    read from ``source.spm`` is refused (two sides do not fit one tokenizer.json)."""

    name = "marian"
    names = ("marian",)
    files = ("source.spm",)
    formats = ("source.spm",)
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    template = EOS
    model_max_length = 512
    spaced = True
    target_backend: Backend | None = None
    source_runs: UnknownRuns | None = None
    target_runs: UnknownRuns | None = None
    decode_pieces: Callable[[list[str]], str] | None = None  # the source model's, as MarianTokenizer's

    def convert(self, src: Source) -> Converted:
        if src.options.get("separate_vocabs"):
            raise TokenizerError(
                "Marian tokenizers with separate_vocabs (target_vocab.json) are not supported "
                f"({src.directory})"
            )
        source, self.source_runs = self.side(src, "source")
        self.target_backend, self.target_runs = self.side(src, "target")
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=str(src.directory / SIDES["source"]))
        self.decode_pieces = processor.decode_pieces  # unknown pieces become `` ⁇ `` as there
        return Converted(source)

    def pipelines(self, backend: Backend) -> tuple[Backend, ...]:
        return (backend,) if self.target_backend is None else (backend, self.target_backend)

    def side(self, src: Source, side: str) -> tuple[Backend, UnknownRuns]:
        """The pipeline of one side (``"source"`` or ``"target"``), ids from ``vocab.json``."""
        directory = src.directory
        path = directory / SIDES[side]
        if not path.is_file():
            raise TokenizerError(f"Marian tokenizer in {directory} needs {SIDES[side]} next to source.spm")
        proto = read_spm(path)
        order = sorted(_vocab(directory).items(), key=lambda kv: kv[1])
        if [i for _, i in order] != list(range(len(order))):
            raise TokenizerError(f"{directory / 'vocab.json'}: ids must be 0..n-1 without gaps")
        scores = {p.piece: p.score for p in proto.pieces if p.type == 1}  # normal pieces
        missing = [p for p in scores if p not in dict(order)]
        if missing:
            raise TokenizerError(
                f"{len(missing)} pieces of {path.name} are not in vocab.json (e.g. {missing[:5]}); "
                "isoform needs every piece of both .spm models in vocab.json"
            )
        unk = src.special.get("unk_token", "<unk>")
        if unk not in dict(order):
            raise TokenizerError(f"{directory / 'vocab.json'} has no unknown token {unk!r}")
        tok = self.unigram(proto, [(t, scores.get(t, UNUSED_SCORE)) for t, _ in order], src)
        known = set("".join(scores)) | {SPIECE}
        specials = set(src.special.values())
        unknown = sorted({c for t, _ in order if t not in specials for c in t} - known)
        candidates = {t: i for t, i in order if t not in specials and any(c in unknown for c in t)}
        normalize = tok.normalizer.normalize_str if tok.normalizer is not None else str
        if unknown:
            blank = normalizers.Replace(
                Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in unknown) + "]"), SENTINEL
            )
            tok.normalizer = (
                blank if tok.normalizer is None else normalizers.Sequence([tok.normalizer, blank])
            )
        return tok, UnknownRuns(candidates, normalize, dict(order)[unk])

    def _runs(self, tok: Tokenizer) -> UnknownRuns | None:
        """The ``UnknownRuns`` of the side ``tok`` encodes with (None when read from tokenizer.json)."""
        return self.target_runs if tok.backend is self.target_backend else self.source_runs

    def tokens(self, tok: Tokenizer, enc: Any, item: Any) -> list[str]:
        runs = self._runs(tok)
        return enc.tokens if runs is None else runs.tokens(enc, item)

    def amend(
        self, tok: Tokenizer, data: dict[str, Any], rows: list, items: list, *, pairs: bool, words: bool,
        add_special_tokens: bool,
    ) -> None:  # fmt: skip
        super().amend(tok, data, rows, items, pairs=pairs, words=words, add_special_tokens=add_special_tokens)
        runs = self._runs(tok)
        if runs is None:
            return
        data["input_ids"] = [runs.ids(e, item, words) for e, item in zip(rows, items)]
        if "special_tokens_mask" in data and add_special_tokens:  # MarianTokenizer marks all but <unk>
            marked = set(tok.all_special_ids) - {tok.unk_token_id}
            data["special_tokens_mask"] = [[int(i in marked) for i in ids] for ids in data["input_ids"]]

    def decode_run(self, tok: Tokenizer) -> Any:
        return self.decode_pieces or tok.backend.decoder.decode

    @contextlib.contextmanager
    def target(self, tok: Tokenizer) -> Iterator[None]:
        if self.target_backend is None:
            yield
            return
        source, tok.backend = tok.backend, self.target_backend
        try:
            yield
        finally:
            tok.backend = source

    def check_save(self) -> None:
        if self.target_backend is not None:
            raise TokenizerError(
                "a Marian tokenizer has two SentencePiece sides and cannot be written as one tokenizer.json; "
                "copy its source.spm, target.spm, vocab.json and tokenizer_config.json instead"
            )


class UnknownRuns:
    """Give a run of unknown characters the ``vocab.json`` id of its text, as transformers' lookup does."""

    def __init__(self, candidates: dict[str, int], normalize: Callable[[str], str], unk_id: int) -> None:
        self.candidates, self.normalize, self.unk_id = candidates, normalize, unk_id

    def ids(self, enc: Any, item: Any, words: bool) -> list[int]:
        """``enc.ids`` with each ``<unk>`` from the model replaced by its text's id, if it has one."""
        ids = enc.ids
        if self.candidates and self.unk_id in ids:
            for k, text in self._surfaces(enc, item, words, lambda k: ids[k] == self.unk_id):
                ids[k] = self.candidates.get(text, self.unk_id)
        return ids

    def tokens(self, enc: Any, item: Any) -> list[str]:
        """``enc.tokens`` with the sentinel runs shown as their text, as SentencePiece shows them."""
        tokens = enc.tokens
        for k, text in self._surfaces(enc, item, False, lambda k: SENTINEL in tokens[k]):
            tokens[k] = text
        return tokens

    def _surfaces(
        self, enc: Any, item: Any, words: bool, wanted: Callable[[int], bool]
    ) -> Iterator[tuple[int, str]]:
        """(position, normalized original text) of the wanted positions."""
        for k, (seq, word) in enumerate(zip(enc.sequence_ids, enc.word_ids)):
            if seq is None or not wanted(k):
                continue
            part = item[seq] if isinstance(item, tuple) else item
            start, end = enc.offsets[k]
            text = part[word] if words else part
            while end < len(text) and unicodedata.combining(text[end]):  # composed by the normalizer
                end += 1
            yield k, self.normalize(text[start:end])


def _vocab(directory: pathlib.Path) -> dict[str, int]:
    path = directory / "vocab.json"
    if not path.is_file():
        raise TokenizerError(f"Marian tokenizer in {directory} needs vocab.json next to source.spm")
    vocab = read_json(path)
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError(f"{path} must map tokens to integer ids")
    return vocab
