"""Families read as transformers' generic ``TokenizersBackend`` reads them, and those isoform does not read.

``generic`` is a ``tokenizer.json`` used as it is: one without a tokenizer_class, or whose class (or
model_type, as Mistral's) AutoTokenizer loads with TokenizersBackend. ``sentencepiece`` is such a
class over a bare ``.model``: the model's own normalizer settings and bos / eos / unk.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE, Unigram

from isoform.errors import TokenizerError
from isoform.tokenization.families.base import Converted, Family, Source, register
from isoform.tokenization.families.sentencepiece import SentencePiece
from isoform.tokenization.files import SPIECE, SPM_FILES


@register
class Generic(Family):
    """A ``tokenizer.json`` read as it is (no template, special tokens from the configs only)."""

    name = "generic"
    files = ("tokenizer.json",)
    backend_classes = ("pretrained", "tokenizersbackend", "pretrainedtokenizer")
    backend_model_types = ("mistral",)  # whatever tokenizer_class says (Mistral's names LlamaTokenizer)


@register
class SentencePieceBackend(SentencePiece):
    """A ``.model`` read by TokenizersBackend: user-defined pieces stay in the model (split off by its
    pre-tokenizer); the model's bos / eos / unk are the special tokens the configs do not name."""

    name = "sentencepiece"
    backend_files = SPM_FILES

    def convert(self, src: Source) -> Converted:
        for role, token in spm_special(src.proto).items():
            src.special.setdefault(role, token)
        control = [p.piece for p in src.proto.pieces if p.type == 3]
        pieces = [AddedToken(piece, normalized=False, special=True) for piece in control]
        return Converted(spm_generic(src.proto, src.options), pieces)


@register
class Unsupported(Family):
    """Families whose own files isoform does not read yet; a tokenizer.json next to them is read."""

    variants = {
        "mbart50": {"names": ("mbart50",), "label": "mBART-50"},
        "blenderbotsmall": {"names": ("blenderbotsmall",), "label": "BlenderbotSmall"},
        "blenderbot-small": {"names": ("blenderbot-small",), "label": "BlenderbotSmall"},
    }
    label: str = ""

    def reader(self, directory: pathlib.Path, found: str) -> Family:
        raise TokenizerError(
            f"{self.label} tokenizers are not supported yet ({directory}); a tokenizer.json "
            "saved by transformers (tokenizer.save_pretrained) in the same directory would be read"
        )


def spm_generic(proto: Any, options: dict[str, Any]) -> Backend:
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
    tok = Backend(model)
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


def spm_special(proto: Any) -> dict[str, str]:
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
