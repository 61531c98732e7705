"""Build ``tokenizers`` pipelines from the slow tokenizer formats.

Each builder returns a ``tokenizers.Tokenizer`` whose normalizer, pre-tokenizer, model, decoder and
post-processor are the ones transformers v5 uses for the same family, so encoding is exact and runs
entirely in Rust. Families: ``bert`` / ``mpnet`` (WordPiece ``vocab.txt``), ``gpt2`` / ``roberta`` /
``blenderbot`` / ``qwen2`` (byte-level BPE ``vocab.json`` + ``merges.txt``), ``openai-gpt`` (BPE with
``</w>`` word ends), ``t5`` / ``albert`` / ``xlm-roberta`` / ``camembert`` / ``mbart`` / ``pegasus``
(SentencePiece Unigram), ``m2m100`` (SentencePiece Unigram with the ids of a separate ``vocab.json``),
``llama`` (SentencePiece BPE with byte fallback) and ``sentencepiece`` (any ``.model`` read as
transformers' generic ``TokenizersBackend`` reads it: the model's own normalizer settings).
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram, WordPiece

from isoform.errors import TokenizerError
from isoform.tokenization.languages import MBART_LANGUAGES

SPIECE = "▁"


def read_wordpiece_vocab(path: pathlib.Path) -> dict[str, int]:
    """``vocab.txt``: one token a line, id = line number (duplicates keep the last id, as transformers)."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    if not vocab:
        raise TokenizerError(f"{path} is empty")
    return vocab


def wordpiece(vocab: dict[str, int], options: dict[str, Any], special: dict[str, str]) -> Tokenizer:
    """BERT: BertNormalizer + BertPreTokenizer + WordPiece, ``[CLS] A [SEP] B [SEP]``."""
    unk = special.get("unk_token", "[UNK]")
    tok = Tokenizer(WordPiece(vocab, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=options.get("tokenize_chinese_chars", True),
        strip_accents=options.get("strip_accents"),
        lowercase=options.get("do_lower_case", True),
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def read_bpe_files(vocab_path: pathlib.Path, merges_path: pathlib.Path) -> tuple[dict[str, int], list]:
    """``vocab.json`` + ``merges.txt`` (the ``#version`` header line is skipped)."""
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{vocab_path} is not valid JSON: {e}") from e
    if not isinstance(vocab, dict):
        raise TokenizerError(f"{vocab_path} must map tokens to ids")
    merges = []
    for line in merges_path.read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"{merges_path}: bad merge line {line!r} (expected two tokens)")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def byte_level_bpe(vocab: dict[str, int], merges: list, options: dict[str, Any]) -> Tokenizer:
    """GPT-2 (no template unless ``add_bos_token``) and RoBERTa/BART (``<s> A </s></s> B </s>``)."""
    add_prefix_space = bool(options.get("add_prefix_space", False))
    tok = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    return tok


# Qwen2Tokenizer's PRETOKENIZE_REGEX: digits one by one, letters with one leading non-letter
QWEN2_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def qwen2_bpe(vocab: dict[str, int], merges: list, options: dict[str, Any]) -> Tokenizer:
    """Qwen2: NFC, Qwen's split regex, then byte-level BPE without an unknown token."""
    tok = Tokenizer(
        BPE(
            vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
            end_of_word_suffix="", fuse_unk=False, byte_fallback=False,
        )
    )  # fmt: skip
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(
                add_prefix_space=bool(options.get("add_prefix_space", False)), use_regex=False
            ),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def openai_gpt_bpe(vocab: dict[str, int], merges: list, special: dict[str, str]) -> Tokenizer:
    """OpenAI GPT: lowercasing BERT normalizer and pre-tokenizer, BPE whose word-final pieces end in ``</w>``."""
    tok = Tokenizer(
        BPE(
            vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="</w>",
            fuse_unk=False, unk_token=special.get("unk_token", "<unk>"),
        )
    )  # fmt: skip
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    return tok


def attach_post_processor(
    tok: Tokenizer, family: str, special: dict[str, str], options: dict[str, Any]
) -> None:
    """Set the family's post-processor; call after special tokens are in the vocabulary."""
    if family in ("bert", "albert"):
        cls, sep = special.get("cls_token", "[CLS]"), special.get("sep_token", "[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, _id(tok, cls)), (sep, _id(tok, sep))],
        )
    elif family in ("roberta", "mpnet"):  # MPNetTokenizer fixes both flags
        sep, cls = special.get("sep_token", "</s>"), special.get("cls_token", "<s>")
        mpnet = family == "mpnet"
        tok.post_processor = processors.RobertaProcessing(
            (sep, _id(tok, sep)),
            (cls, _id(tok, cls)),
            trim_offsets=mpnet or bool(options.get("trim_offsets", True)),
            add_prefix_space=not mpnet and bool(options.get("add_prefix_space", False)),
        )
    elif family in ("t5", "pegasus", "marian"):
        eos = special.get("eos_token", "</s>")
        pair = ["$A", eos, "$B", eos] if family == "t5" else ["$A", "$B", eos]
        tok.post_processor = processors.TemplateProcessing(
            single=["$A", eos], pair=pair, special_tokens=[(eos, _id(tok, eos))]
        )
    elif family in ("xlm-roberta", "camembert"):
        bos, eos = special.get("bos_token", "<s>"), special.get("eos_token", "</s>")
        tok.post_processor = processors.TemplateProcessing(
            single=[bos, "$A", eos],
            pair=[bos, "$A", eos, eos, "$B", eos],
            special_tokens=[(bos, _id(tok, bos)), (eos, _id(tok, eos))],
        )
    else:  # gpt2, qwen2, openai-gpt, llama, sentencepiece, unknown: transformers' update_post_processor
        bos_eos_template(tok, special, bool(options.get("add_bos_token")), bool(options.get("add_eos_token")))


def bos_eos_template(tok: Tokenizer, special: dict[str, str], add_bos: bool, add_eos: bool) -> None:
    """transformers' ``update_post_processor``: optional bos/eos around each sequence."""
    bos, eos = special.get("bos_token"), special.get("eos_token")
    add_bos, add_eos = add_bos and bos is not None, add_eos and eos is not None
    single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
    pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
    tokens = []
    if add_bos:
        tokens.append((bos, _id(tok, bos)))
    if add_eos:
        tokens.append((eos, _id(tok, eos)))
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=tokens)


def read_spm(path: pathlib.Path):
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


def spm_vocab(
    proto, family: str, special: dict[str, str], options: dict[str, Any]
) -> list[tuple[str, float]]:
    """Piece list with the id layout transformers uses (fairseq offsets for XLM-R / CamemBERT / mBART)."""
    vocab = [(p.piece, p.score) for p in proto.pieces]
    if family == "mbart":
        head = [special.get(k, d) for k, d in (("bos_token", "<s>"), ("pad_token", "<pad>"))]
        head += [special.get(k, d) for k, d in (("eos_token", "</s>"), ("unk_token", "<unk>"))]
        tail = [*MBART_LANGUAGES, special.get("mask_token", "<mask>")]
        return [(t, 0.0) for t in head] + vocab[3:] + [(t, 0.0) for t in tail]
    if family == "pegasus":  # transformers' PegasusConverter.convert_from_spm, config values first
        masks = [str(_text(options.get("mask_token", "<mask_1>")))]
        masks.append(str(_text(options.get("mask_token_sent", "<mask_2>"))))
        head = [special.get("pad_token", "<pad>"), special.get("eos_token", "</s>")]
        head += [m for i, m in enumerate(masks) if m != "None" and m not in masks[:i]]
        head += [f"<unk_{i}>" for i in range(2, int(options.get("offset", 103)))]
        return [(t, -100.0 if t.startswith("<unk_") else 0.0) for t in head] + vocab[2:]
    if family == "xlm-roberta":
        head = [special.get(k, d) for k, d in (("bos_token", "<s>"), ("pad_token", "<pad>"))]
        head += [special.get(k, d) for k, d in (("eos_token", "</s>"), ("unk_token", "<unk>"))]
        return [(t, 0.0) for t in head] + vocab[3:] + [(special.get("mask_token", "<mask>"), 0.0)]
    if family == "camembert":
        head = [("<s>NOTUSED", 0.0), (special.get("pad_token", "<pad>"), 0.0), ("</s>NOTUSED", 0.0)]
        head += [(special.get("unk_token", "<unk>"), 0.0), ("<unk>NOTUSED", -100.0)]
        return head + vocab[1:] + [(special.get("mask_token", "<mask>"), 0.0)]
    if family == "t5":
        extra_ids = int(options.get("extra_ids", 100))
        return vocab + [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
    return vocab


def spm_unigram(proto, family: str, options: dict[str, Any], special: dict[str, str]) -> Tokenizer:
    """T5, ALBERT, XLM-R, CamemBERT, mBART, Pegasus: Unigram + Metaspace, as the v5 classes build them."""
    return unigram_pipeline(proto, spm_vocab(proto, family, special, options), family, options, special)


def unigram_pipeline(
    proto, vocab: list[tuple[str, float]], family: str, options: dict[str, Any], special: dict[str, str]
) -> Tokenizer:
    """Unigram over ``vocab`` with the family's normalizer, pre-tokenizer and decoder."""
    unk = special.get("unk_token", "<unk>")
    unk_id = {"t5": 2, "albert": 1, "xlm-roberta": 3, "mbart": 3}.get(family)
    if unk_id is None:
        unk_id = next((i for i, (t, _) in enumerate(vocab) if t == unk), 0)
    tok = Tokenizer(Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    charsmap = proto.normalizer_spec.precompiled_charsmap or None
    steps = []
    if family == "albert":
        steps = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
        if not options.get("keep_accents", False):
            steps += [normalizers.NFKD(), normalizers.StripAccents()]
        if options.get("do_lower_case", True):
            steps.append(normalizers.Lowercase())
    if charsmap is not None and family != "mbart":  # MBartTokenizer drops the charsmap
        steps.append(normalizers.Precompiled(charsmap))
    if family == "pegasus":
        steps = steps or [normalizers.Replace(Regex(r"\n"), " ")]
        steps.append(normalizers.Replace(Regex(r" {2,}"), " "))
    if family in ("albert", "pegasus"):
        tok.normalizer = normalizers.Sequence(steps)
    elif steps:
        tok.normalizer = steps[0]
    scheme = "always" if options.get("add_prefix_space", True) else "never"
    metaspace = pre_tokenizers.Metaspace(replacement=SPIECE, prepend_scheme=scheme)
    tok.pre_tokenizer = (
        metaspace
        if family == "pegasus"
        else pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace])
    )
    tok.decoder = decoders.Metaspace(replacement=SPIECE, prepend_scheme=scheme)
    return tok


def spm_with_vocab(
    proto, vocab: dict[str, int], options: dict[str, Any], special: dict[str, str]
) -> Tokenizer:
    """M2M100: SentencePiece segmentation, ids from ``vocab.json`` (the fairseq dictionary).

    The Unigram lists ``vocab.json`` in id order with each piece's SentencePiece score, so the Rust
    pipeline segments as SentencePiece does and emits the dictionary's ids directly.
    """
    scores = {p.piece: p.score for p in proto.pieces if p.type == 1}  # normal pieces
    order = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in order] != list(range(len(order))):
        raise TokenizerError("vocab.json ids must be 0..n-1 without gaps")
    missing = [p for p in scores if p not in vocab]
    if missing:
        raise TokenizerError(
            f"{len(missing)} SentencePiece pieces are not in vocab.json (e.g. {missing[:5]}); "
            "isoform needs every piece of the .model in vocab.json"
        )
    entries = [(t, scores.get(t, 0.0)) for t, _ in order]
    return unigram_pipeline(proto, entries, "m2m100", options, special)


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


def spm_bpe(proto, options: dict[str, Any], special: dict[str, str]) -> Tokenizer:
    """Llama-style SentencePiece BPE with byte fallback; bos/eos come from ``bos_eos_template``."""
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    tok = Tokenizer(
        BPE(vocab=vocab, merges=generate_merges(vocab), fuse_unk=True, byte_fallback=True, dropout=None)
    )
    add_prefix_space = options.get("add_prefix_space")
    add_prefix_space = True if add_prefix_space is None else bool(add_prefix_space)
    scheme = ("always" if options.get("legacy", False) else "first") if add_prefix_space else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPIECE, prepend_scheme=scheme, split=False)
    steps = [decoders.Replace(SPIECE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    return tok


def spm_generic(proto, options: dict[str, Any]) -> Tokenizer:
    """Any SentencePiece model as transformers' ``build_tokenizer_from_spm_proto`` reads it.

    The model's own normalizer spec (charsmap, extra-whitespace removal, whitespace escaping, dummy
    prefix), BPE merges ranked by piece score, user-defined pieces split off whole; ``legacy`` (default
    True) gives every chunk between added tokens its dummy prefix.
    """
    spec, trainer = proto.normalizer_spec, proto.trainer_spec
    user_defined = [p.piece for p in proto.pieces if p.type == 4]
    if trainer.model_type == 1:  # Unigram
        model = Unigram(
            [(p.piece, p.score) for p in proto.pieces],
            unk_id=trainer.unk_id,
            byte_fallback=trainer.byte_fallback,
        )
    else:
        vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
        normal = {p.piece: (p.score, i) for i, p in enumerate(proto.pieces) if p.type == 1}
        ranked = [
            (-score, i, token[:k], token[k:])
            for token, (score, i) in normal.items()
            for k in range(1, len(token))
            if token[:k] in normal and token[k:] in normal
        ]
        merges = [(left, right) for _, _, left, right in sorted(ranked)]
        model = BPE(
            vocab=vocab, merges=merges, unk_token=trainer.unk_piece, fuse_unk=True,
            byte_fallback=trainer.byte_fallback, dropout=None, ignore_merges=bool(user_defined),
        )  # fmt: skip
    tok = Tokenizer(model)
    legacy = bool(options.get("legacy", True))
    steps = [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
    if spec.remove_extra_whitespaces:  # spaces only: SentencePiece leaves newlines alone
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.escape_whitespaces:
        steps.append(normalizers.Replace(" ", SPIECE))
    if spec.add_dummy_prefix and legacy:  # Metaspace skips the prefix before a leading "▁", SentencePiece not
        steps.append(normalizers.Replace(Regex(rf"\A{SPIECE}"), SPIECE * 2))
    tok.normalizer = normalizers.Sequence(steps)
    pre = []
    if spec.add_dummy_prefix:
        scheme = "always" if legacy else "first"
        pre.append(pre_tokenizers.Metaspace(replacement=SPIECE, prepend_scheme=scheme, split=False))
    if user_defined:
        pattern = "|".join(re.escape(p) for p in sorted(user_defined, key=len, reverse=True))
        pre.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
    if pre:
        tok.pre_tokenizer = pre_tokenizers.Sequence(pre)
    steps = [decoders.Replace(SPIECE, " ")]
    if trainer.byte_fallback:
        steps.append(decoders.ByteFallback())
    if spec.add_dummy_prefix:
        steps += [decoders.Fuse(), decoders.Strip(content=" ", left=1)]
    elif trainer.byte_fallback:
        steps.append(decoders.Fuse())
    tok.decoder = decoders.Sequence(steps)
    return tok


def spm_special(proto) -> dict[str, str]:
    """The bos/eos/unk pieces a SentencePiece model declares (transformers' defaults for a bare ``.model``)."""
    spec = proto.trainer_spec
    found = {}
    for role, index, piece, default in (
        ("bos_token", spec.bos_id, spec.bos_piece, "<s>"),
        ("eos_token", spec.eos_id, spec.eos_piece, "</s>"),
        ("unk_token", spec.unk_id, spec.unk_piece, "<unk>"),
    ):
        if index >= 0:
            found[role] = piece or default
    return found


def _text(value: Any) -> Any:
    return value.get("content") if isinstance(value, dict) else value


def _id(tok: Tokenizer, token: str) -> int:
    found = tok.token_to_id(token)
    if found is None:
        raise TokenizerError(f"special token {token!r} is not in the vocabulary")
    return found
