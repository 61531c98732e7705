"""Special-token templates (post-processors) a family declares as data, and the shared token sets.

A template is attached to a pipeline built from slow files (a ``tokenizer.json`` keeps its own).
``{role}`` in a piece stands for that special token: the configured one, else the family's default.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Protocol

from tokenizers import Tokenizer as Backend
from tokenizers import processors

from isoform.tokenization.files import token_id

BERT_SPECIAL = {
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}  # fmt: skip
ROBERTA_SPECIAL = {
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
    "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
}  # fmt: skip
DEBERTA_SPECIAL = {**BERT_SPECIAL, "bos_token": "[CLS]", "eos_token": "[SEP]"}  # DeBERTa v1, v2 and v3


class PostProcessor(Protocol):
    def attach(
        self, tok: Backend, special: dict[str, str], defaults: dict[str, str], options: dict[str, Any]
    ) -> None:
        """Set ``tok``'s post-processor; call after the special tokens are in its vocabulary."""


@dataclass(frozen=True)
class Template:
    """A ``TemplateProcessing`` of ``single`` / ``pair`` (a string or a list of pieces)."""

    single: str | tuple[str, ...]
    pair: str | tuple[str, ...]

    def attach(
        self, tok: Backend, special: dict[str, str], defaults: dict[str, str], options: dict[str, Any]
    ) -> None:
        roles = {**defaults, **special}
        pieces = [self.single] if isinstance(self.single, str) else list(self.single)
        pieces += [self.pair] if isinstance(self.pair, str) else list(self.pair)
        used = dict.fromkeys(f for p in pieces for _, f, _, _ in string.Formatter().parse(p) if f)
        tok.post_processor = processors.TemplateProcessing(
            single=_fill(self.single, roles),
            pair=_fill(self.pair, roles),
            special_tokens=[(roles[r], token_id(tok, roles[r])) for r in used],
        )


@dataclass(frozen=True)
class RobertaTemplate:
    """``RobertaProcessing`` (``<s> A </s></s> B </s>``); a flag left None comes from the options."""

    trim_offsets: bool | None = None
    add_prefix_space: bool | None = None

    def attach(
        self, tok: Backend, special: dict[str, str], defaults: dict[str, str], options: dict[str, Any]
    ) -> None:
        roles = {**defaults, **special}
        sep, cls = roles["sep_token"], roles["cls_token"]
        trim = self.trim_offsets
        prefix = self.add_prefix_space
        tok.post_processor = processors.RobertaProcessing(
            (sep, token_id(tok, sep)),
            (cls, token_id(tok, cls)),
            trim_offsets=bool(options.get("trim_offsets", True)) if trim is None else trim,
            add_prefix_space=bool(options.get("add_prefix_space", False)) if prefix is None else prefix,
        )


@dataclass(frozen=True)
class BosEosTemplate:
    """transformers' ``update_post_processor``: bos / eos around each sequence as the options'
    ``add_bos_token`` / ``add_eos_token`` say (the configured tokens only, no defaults)."""

    def attach(
        self, tok: Backend, special: dict[str, str], defaults: dict[str, str], options: dict[str, Any]
    ) -> None:
        bos, eos = special.get("bos_token"), special.get("eos_token")
        add_bos = bool(options.get("add_bos_token")) and bos is not None
        add_eos = bool(options.get("add_eos_token")) and eos is not None
        single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
        tokens = [(t, token_id(tok, t)) for t, add in ((bos, add_bos), (eos, add_eos)) if add]
        tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=tokens)


CLS_SEP = Template("{cls_token}:0 $A:0 {sep_token}:0", "{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1")
EOS = Template(("$A", "{eos_token}"), ("$A", "$B", "{eos_token}"))  # Pegasus, Marian
BOS_EOS = BosEosTemplate()


def _fill(template: str | tuple[str, ...], roles: dict[str, str]) -> str | list[str]:
    if isinstance(template, str):
        return template.format(**roles)
    return [p.format(**roles) for p in template]
