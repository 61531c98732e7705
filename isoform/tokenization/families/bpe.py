"""BPE over ``vocab.json`` + ``merges.txt``: byte-level GPT-2 / RoBERTa / Blenderbot / DeBERTa, Qwen2,
OpenAI GPT."""

from __future__ import annotations

from tokenizers import Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from isoform.tokenization.families.base import TYPES_LAST, Converted, Family, Source, register
from isoform.tokenization.files import read_bpe_files
from isoform.tokenization.templates import DEBERTA_SPECIAL, ROBERTA_SPECIAL, RobertaTemplate, Template

GPT2_SPECIAL = {"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
# DebertaTokenizer (transformers 5): two separators between the texts, every token type 0
DEBERTA_TEMPLATE = Template(
    "{cls_token}:0 $A:0 {sep_token}:0", "{cls_token}:0 $A:0 {sep_token}:0 {sep_token}:0 $B:0 {sep_token}:0"
)
# Qwen2Tokenizer's PRETOKENIZE_REGEX: digits one by one, letters with one leading non-letter
QWEN2_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


class MergesFamily(Family):
    """Base of the ``vocab.json`` + ``merges.txt`` families: `pipeline` builds from the two files."""

    formats = ("vocab.json",)

    def convert(self, src: Source) -> Converted:
        vocab, merges = read_bpe_files(src.path, src.directory / "merges.txt")
        return Converted(self.pipeline(vocab, merges, src))

    def pipeline(self, vocab: dict[str, int], merges: list, src: Source) -> Backend:
        raise NotImplementedError


@register
class ByteLevel(MergesFamily):
    """Byte-level BPE: GPT-2 (no template unless ``add_bos_token``), RoBERTa / BART
    (``<s> A </s></s> B </s>``), Blenderbot (prefix space by default, ``A </s>``) and DeBERTa
    (``[CLS] A [SEP][SEP] B [SEP]``)."""

    variants = {
        "gpt2": {"names": ("gpt2", "gpt_neo"), "files": ("vocab.json",), "special": GPT2_SPECIAL},
        "roberta": {"names": ("roberta", "bart", "ibert"), "special": ROBERTA_SPECIAL, "template": RobertaTemplate()},
        "blenderbot": {"names": ("blenderbot",), "special": ROBERTA_SPECIAL, "mask_lstrip": True,
                       "defaults": {"add_prefix_space": True}},
        "deberta": {"names": ("deberta",), "special": DEBERTA_SPECIAL, "template": DEBERTA_TEMPLATE,
                    "input_names": TYPES_LAST},
    }  # fmt: skip

    def pipeline(self, vocab: dict[str, int], merges: list, src: Source) -> Backend:
        tok = Backend(
            BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                fuse_unk=False)
        )  # fmt: skip
        prefix_space = bool(src.options.get("add_prefix_space", False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
        tok.decoder = decoders.ByteLevel()
        return tok


@register
class Qwen2(MergesFamily):
    """Qwen2: NFC, Qwen's split regex, then byte-level BPE without an unknown token."""

    name = "qwen2"
    names = ("qwen2",)
    special = {"unk_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}

    def pipeline(self, vocab: dict[str, int], merges: list, src: Source) -> Backend:
        tok = Backend(
            BPE(
                vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
                end_of_word_suffix="", fuse_unk=False, byte_fallback=False,
            )
        )  # fmt: skip
        tok.normalizer = normalizers.NFC()
        prefix_space = bool(src.options.get("add_prefix_space", False))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=prefix_space, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        return tok


@register
class OpenAIGPT(MergesFamily):
    """OpenAI GPT: lowercasing BERT normalizer and pre-tokenizer, BPE with ``</w>`` word-final pieces."""

    name = "openai-gpt"
    names = ("openaigpt", "openai-gpt")
    special = {"unk_token": "<unk>"}

    def pipeline(self, vocab: dict[str, int], merges: list, src: Source) -> Backend:
        tok = Backend(
            BPE(
                vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                end_of_word_suffix="</w>", fuse_unk=False, unk_token=src.special.get("unk_token", "<unk>"),
            )
        )  # fmt: skip
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
        return tok

