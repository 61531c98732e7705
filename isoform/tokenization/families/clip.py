"""CLIP's ``vocab.json`` + ``merges.txt``: byte-level BPE whose word-final pieces end in ``</w>``.

transformers' ``CLIPTokenizer`` (model types ``clip`` and ``clip_text_model``) builds its pipeline
itself: NFC, every whitespace run to one space, lowercase; CLIP's word regex (whitespace dropped),
then byte-level pieces; ``<|startoftext|> A <|endoftext|>`` (pairs ``... <|endoftext|><|endoftext|>
B <|endoftext|>``, all type 0). Decoding replaces each ``</w>`` by a space and strips the text.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from isoform.tokenization.families.base import register
from isoform.tokenization.families.bpe import MergesFamily
from isoform.tokenization.files import token_id

if TYPE_CHECKING:
    from isoform.tokenization.families.base import Source
    from isoform.tokenization.tokenizer import Tokenizer

CLIP_SPECIAL = {
    "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
}  # fmt: skip
SUFFIX = "</w>"  # CLIPTokenizer's end_of_word_suffix, whatever a tokenizer.json says
CLIP_REGEX = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@dataclass(frozen=True)
class ClipTemplate:
    """``RobertaProcessing`` with the eos token as separator and the bos token as start, offsets
    untrimmed (CLIPTokenizer's post-processor)."""

    def attach(
        self, tok: Backend, special: dict[str, str], defaults: dict[str, str], options: dict[str, Any]
    ) -> None:
        roles = {**defaults, **special}
        eos, bos = roles["eos_token"], roles["bos_token"]
        tok.post_processor = processors.RobertaProcessing(
            (eos, token_id(tok, eos)), (bos, token_id(tok, bos)), trim_offsets=False, add_prefix_space=False
        )


@register
class Clip(MergesFamily):
    """CLIPTokenizer: its fixed pipeline over the files' vocabulary and merges."""

    name = "clip"
    names = ("clip", "clip_text_model")
    special = CLIP_SPECIAL
    template = ClipTemplate()

    def pipeline(self, vocab: dict[str, int], merges: list, src: Source) -> Backend:
        unk = src.special.get("unk_token", CLIP_SPECIAL["unk_token"])
        tok = Backend(
            BPE(
                vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                end_of_word_suffix=SUFFIX, fuse_unk=False, unk_token=unk,
            )
        )  # fmt: skip
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(CLIP_REGEX), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        return tok

    def decode(self, tok: Tokenizer, ids: list[int], skip_special_tokens: bool) -> str:
        """The byte-level text with each ``</w>`` a space, stripped (CLIPTokenizer's wrapped decode)."""
        return tok.backend.decode(ids, skip_special_tokens=skip_special_tokens).replace(SUFFIX, " ").strip()

    def save_files(self, tok: Tokenizer, config: dict[str, Any], directory: pathlib.Path) -> None:
        """Saved as CLIPTokenizer, whose decoding the generic class has not."""
        config["tokenizer_class"] = "CLIPTokenizer"
