"""WordPiece ``vocab.txt``: BERT (also DistilBERT, ELECTRA), MPNet and Funnel Transformer."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer as Backend
from tokenizers import decoders, normalizers, pre_tokenizers
from tokenizers.models import WordPiece as WordPieceModel

from isoform.tokenization.families.base import WITH_TYPES, WITHOUT_TYPES, Converted, Family, Source, register
from isoform.tokenization.files import flag_option, read_wordpiece_vocab
from isoform.tokenization.templates import BERT_SPECIAL, CLS_SEP, ROBERTA_SPECIAL, RobertaTemplate, Template

MPNET_SPECIAL = {**ROBERTA_SPECIAL, "unk_token": "[UNK]"}
FUNNEL_SPECIAL = {
    "unk_token": "<unk>", "sep_token": "<sep>", "pad_token": "<pad>", "cls_token": "<cls>",
    "mask_token": "<mask>", "bos_token": "<s>", "eos_token": "</s>",
}  # fmt: skip
# FunnelTokenizer's template: BERT's, with token type 2 for <cls> (the model treats it as in every segment)
FUNNEL_CLS_SEP = Template("{cls_token}:2 $A:0 {sep_token}:0", "{cls_token}:2 $A:0 {sep_token}:0 $B:1 {sep_token}:1")


@register
class WordPiece(Family):
    """BertNormalizer + BertPreTokenizer + WordPiece; BERT's ``[CLS] A [SEP] B [SEP]`` or MPNet's
    RoBERTa template (MPNetTokenizer fixes both of its flags)."""

    formats = ("vocab.txt",)
    variants = {
        "bert": {"names": ("bert", "distilbert", "electra", "megatron-bert", "layoutlm", "mobilebert",
                           "squeezebert", "convbert"), "files": ("vocab.txt",), "special": BERT_SPECIAL,
                 "template": CLS_SEP, "input_names": WITH_TYPES},
        "mpnet": {"names": ("mpnet",), "special": MPNET_SPECIAL, "mask_lstrip": True,
                  "template": RobertaTemplate(trim_offsets=True, add_prefix_space=False)},
        # FunnelTokenizer (5.x) keeps the default model_input_names: token types only when asked for
        "funnel": {"names": ("funnel",), "special": FUNNEL_SPECIAL, "template": FUNNEL_CLS_SEP},
    }  # fmt: skip

    def convert(self, src: Source) -> Converted:
        return Converted(wordpiece(read_wordpiece_vocab(src.path), src.options, src.special))

    def model_input_names(self, tokenizer_class: str) -> list[str]:
        # DistilBertTokenizer (named as such, not by model_type) has no token types
        return list(WITHOUT_TYPES if tokenizer_class == "DistilBertTokenizer" else self.input_names)


def wordpiece(vocab: dict[str, int], options: dict[str, Any], special: dict[str, str]) -> Backend:
    """BERT's pipeline over ``vocab``, with tokenizer_config's casing / accent / Chinese settings."""
    tok = Backend(WordPieceModel(vocab, unk_token=special.get("unk_token", "[UNK]")))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=flag_option(options, "tokenize_chinese_chars", True),
        strip_accents=flag_option(options, "strip_accents", None),
        lowercase=flag_option(options, "do_lower_case", True),
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok
