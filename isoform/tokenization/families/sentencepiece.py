"""SentencePiece ``.model`` families: the shared Unigram conversion, T5, ALBERT, Pegasus, DeBERTa-v2 and
Llama (BPE)."""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE, Unigram

from isoform.tokenization.families.base import TYPES_LAST, Converted, Family, Source, register
from isoform.tokenization.files import SPIECE, SPM_FILES, content, flag_option, int_option
from isoform.tokenization.templates import BERT_SPECIAL, CLS_SEP, DEBERTA_SPECIAL, EOS, Template


class SentencePiece(Family):
    """Base of the families that read a SentencePiece model: a Unigram over `vocab` with the model's
    charsmap (`normalizer`), Metaspace pre-tokenizer and decoder, as the transformers v5 classes build it."""

    formats = SPM_FILES
    unk_id: int | None = None  # the unknown token's id; None: where ``unk_token`` is in the vocab
    split_whitespace: bool = True  # WhitespaceSplit before Metaspace

    def convert(self, src: Source) -> Converted:
        # control (3) and user-defined (4) pieces become added tokens, as transformers' extractor does
        pieces = [
            AddedToken(p.piece, normalized=False, special=p.type == 3)
            for p in src.proto.pieces
            if p.type in (3, 4)
        ]
        return Converted(self.pipeline(src), pieces)

    def pipeline(self, src: Source) -> Backend:
        return self.unigram(src.proto, self.vocab(src), src)

    def vocab(self, src: Source) -> list[tuple[str, float]]:
        """(piece, score) in id order: the model's pieces, laid out as the transformers class does."""
        return [(p.piece, p.score) for p in src.proto.pieces]

    def normalizer(self, proto: Any, options: dict[str, Any]) -> Any:
        steps = charsmap(proto)
        return steps[0] if steps else None

    def unigram(self, proto: Any, vocab: list[tuple[str, float]], src: Source) -> Backend:
        """The Unigram pipeline over ``vocab`` with ``proto``'s normalizer."""
        unk_id = self.unk_id
        if unk_id is None:
            unk = src.special.get("unk_token", "<unk>")
            unk_id = next((i for i, (t, _) in enumerate(vocab) if t == unk), 0)
        tok = Backend(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
        normalizer = self.normalizer(proto, src.options)
        if normalizer is not None:
            tok.normalizer = normalizer
        scheme = "always" if src.options.get("add_prefix_space", True) else "never"
        metaspace = pre_tokenizers.Metaspace(replacement=SPIECE, prepend_scheme=scheme)
        split = [pre_tokenizers.WhitespaceSplit()] if self.split_whitespace else []
        tok.pre_tokenizer = pre_tokenizers.Sequence([*split, metaspace]) if split else metaspace
        tok.decoder = decoders.Metaspace(replacement=SPIECE, prepend_scheme=scheme)
        return tok


def charsmap(proto: Any) -> list[Any]:
    """The model's precompiled normalization as a one-step list (empty without one)."""
    compiled = proto.normalizer_spec.precompiled_charsmap
    return [normalizers.Precompiled(compiled)] if compiled else []


@register
class T5(SentencePiece):
    """T5 / mT5: ``A </s>``, sentinel tokens ``<extra_id_i>`` (``extra_ids``) after the pieces. Also
    reads a Unigram model for a family that has no SentencePiece reader."""

    name = "t5"
    names = ("t5", "mt5")
    files = ("spiece.model",)
    fallback = ("spm",)
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    template = Template(("$A", "{eos_token}"), ("$A", "{eos_token}", "$B", "{eos_token}"))
    unk_id = 2

    def vocab(self, src: Source) -> list[tuple[str, float]]:
        extra_ids = int_option(src.options, "extra_ids", 100)
        return super().vocab(src) + [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        if any("<extra_id_" in str(content(t)) for t in extra):
            return extra
        return extra + [f"<extra_id_{i}>" for i in range(int_option(options, "extra_ids", 100))]


@register
class Albert(SentencePiece):
    """ALBERT: BERT's template, quotes / accents / case normalized before the charsmap."""

    name = "albert"
    names = ("albert",)
    special = {
        **BERT_SPECIAL, "bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "<unk>",
        "pad_token": "<pad>",
    }  # fmt: skip
    template = CLS_SEP
    unk_id = 1

    def normalizer(self, proto: Any, options: dict[str, Any]) -> Any:
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not options.get("keep_accents", False):
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if options.get("do_lower_case", True):
            steps.append(normalizers.Lowercase())
        return normalizers.Sequence(steps + charsmap(proto))


PEGASUS_MASKS = (("mask_token", "<mask_1>"), ("mask_token_sent", "<mask_2>"))  # key, default


@register
class Pegasus(SentencePiece):
    """Pegasus: pad, eos, the mask tokens and ``<unk_2>``..``<unk_{offset-1}>`` before the pieces
    (transformers' PegasusConverter, config values first); Metaspace alone splits."""

    name = "pegasus"
    names = ("pegasus",)
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask_2>"}
    template = EOS
    split_whitespace = False

    def vocab(self, src: Source) -> list[tuple[str, float]]:
        options, special = src.options, src.special
        masks = [str(_text(options.get(k, d))) for k, d in PEGASUS_MASKS]
        head = [special.get("pad_token", "<pad>"), special.get("eos_token", "</s>")]
        head += [m for i, m in enumerate(masks) if m != "None" and m not in masks[:i]]
        head += [f"<unk_{i}>" for i in range(2, int_option(options, "offset", 103))]
        return [(t, -100.0 if t.startswith("<unk_") else 0.0) for t in head] + super().vocab(src)[2:]

    def normalizer(self, proto: Any, options: dict[str, Any]) -> Any:
        steps = charsmap(proto) or [normalizers.Replace(Regex(r"\n"), " ")]
        return normalizers.Sequence([*steps, normalizers.Replace(Regex(r" {2,}"), " ")])

    def extra_special(
        self, extra: list[Any], configured: list[Any] | None, options: dict[str, Any]
    ) -> list[Any]:
        if configured is not None:  # the configured list replaces PegasusTokenizer's own
            return extra
        sent = content(options.get("mask_token_sent", "<mask_1>"))
        unks = [f"<unk_{i}>" for i in range(2, int_option(options, "offset", 103))]
        return ([] if sent is None else [sent]) + unks


@register
class DebertaV2(SentencePiece):
    """DeBERTa-v2 / v3 (``spm.model``): the pieces as they are, the model's charsmap unused: whitespace
    runs and controls folded to one space, NFC, the end stripped (lowercased first for ``do_lower_case``);
    punctuation split off for ``split_by_punct``; BERT's template."""

    name = "deberta-v2"
    names = ("debertav2", "deberta-v2")
    files = ("spm.model",)
    special = DEBERTA_SPECIAL
    template = CLS_SEP
    input_names = TYPES_LAST

    def pipeline(self, src: Source) -> Backend:
        vocab, options = self.vocab(src), src.options
        unk = (src.special.get("unk_token", "[UNK]"), 0.0)  # else the model's unknown piece
        unk_id = vocab.index(unk) if unk in vocab else src.proto.trainer_spec.unk_id
        tok = Backend(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
        lower = [normalizers.Lowercase()] if flag_option(options, "do_lower_case", False) else []
        tok.normalizer = normalizers.Sequence(
            [*lower, normalizers.Replace(Regex(r"\s{2,}|[\n\r\t]"), " "), normalizers.NFC(),
             normalizers.Strip(left=False, right=True)]
        )  # fmt: skip
        scheme = "always" if flag_option(options, "add_prefix_space", True) else "first"
        punct = flag_option(options, "split_by_punct", False)
        split = [pre_tokenizers.Punctuation(behavior="isolated")] if punct else []
        metaspace = pre_tokenizers.Metaspace(replacement=SPIECE, prepend_scheme=scheme)
        tok.pre_tokenizer = pre_tokenizers.Sequence([*split, metaspace])
        tok.decoder = decoders.Metaspace(replacement=SPIECE, prepend_scheme=scheme)
        return tok


@register
class Llama(SentencePiece):
    """Llama: SentencePiece BPE with byte fallback, bos / eos from ``add_bos_token`` / ``add_eos_token``.
    Also reads a BPE model for a family that has no SentencePiece reader."""

    name = "llama"
    names = ("llama",)
    files = ("tokenizer.model",)
    fallback = ("spm-bpe",)
    special = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    padding_side = "left"

    def pipeline(self, src: Source) -> Backend:
        vocab = {p.piece: i for i, p in enumerate(src.proto.pieces)}
        merges = generate_merges(vocab)
        tok = Backend(BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None))
        add_prefix_space = src.options.get("add_prefix_space")
        add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
        scheme = ("always" if src.options.get("legacy", False) else "first") if add_prefix_space else "never"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE, prepend_scheme=scheme, split=False)
        steps = [decoders.Replace(SPIECE, " "), decoders.ByteFallback(), decoders.Fuse()]
        if add_prefix_space:
            steps.append(decoders.Strip(content=" ", left=1))
        tok.decoder = decoders.Sequence(steps)
        return tok


def generate_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Merges implied by a piece vocabulary, ranked by the merged piece's id (transformers' rule)."""
    merges = []
    for merge, rank in vocab.items():
        local = [
            (merge[:i], merge[i:], rank)
            for i in range(1, len(merge))
            if merge[:i] in vocab and merge[i:] in vocab
        ]
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda v: (v[2], len(v[0]), len(v[1])))
    return [(a, b) for a, b, _ in merges]


def _text(value: Any) -> Any:
    return value.get("content") if isinstance(value, dict) else value
