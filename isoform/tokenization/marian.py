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

import json
import pathlib
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from tokenizers import Regex, normalizers
from tokenizers import Tokenizer as Backend

from isoform.errors import TokenizerError
from isoform.tokenization import convert

UNUSED_SCORE = -1e6  # pieces of the other side's model: never chosen over the side's own pieces
SIDES = {"source": "source.spm", "target": "target.spm"}
SENTINEL = "\ue000"  # a private-use character: no piece has it, so it is always unknown


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


def side_backend(
    directory: pathlib.Path, side: str, options: dict[str, Any], special: dict[str, str]
) -> tuple[Backend, UnknownRuns]:
    """The ``tokenizers`` pipeline of one side (``"source"`` or ``"target"``), ids from ``vocab.json``."""
    if options.get("separate_vocabs"):
        raise TokenizerError(
            f"Marian tokenizers with separate_vocabs (target_vocab.json) are not supported ({directory})"
        )
    path = directory / SIDES[side]
    if not path.is_file():
        raise TokenizerError(f"Marian tokenizer in {directory} needs {SIDES[side]} next to source.spm")
    proto = convert.read_spm(path)
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
    unk = special.get("unk_token", "<unk>")
    if unk not in dict(order):
        raise TokenizerError(f"{directory / 'vocab.json'} has no unknown token {unk!r}")
    entries = [(t, scores.get(t, UNUSED_SCORE)) for t, _ in order]
    tok = convert.unigram_pipeline(proto, entries, "marian", options, special)
    known = set("".join(scores)) | {convert.SPIECE}
    specials = set(special.values())
    unknown = sorted({c for t, _ in order if t not in specials for c in t} - known)
    candidates = {t: i for t, i in order if t not in specials and any(c in unknown for c in t)}
    normalize = tok.normalizer.normalize_str if tok.normalizer is not None else str
    if unknown:
        blank = normalizers.Replace(
            Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in unknown) + "]"), SENTINEL
        )
        tok.normalizer = blank if tok.normalizer is None else normalizers.Sequence([tok.normalizer, blank])
    return tok, UnknownRuns(candidates, normalize, dict(order)[unk])


def piece_decoder(directory: pathlib.Path) -> Callable[[list[str]], str]:
    """SentencePiece ``decode_pieces`` of the source model (unknown pieces become `` ⁇ `` as there)."""
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(directory / SIDES["source"])).decode_pieces


def _vocab(directory: pathlib.Path) -> dict[str, int]:
    path = directory / "vocab.json"
    if not path.is_file():
        raise TokenizerError(f"Marian tokenizer in {directory} needs vocab.json next to source.spm")
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError(f"{path} must map tokens to integer ids")
    return vocab
