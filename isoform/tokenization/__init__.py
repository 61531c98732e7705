"""Tokenizers for every Hugging Face tokenizer format, token-for-token with transformers.

``Tokenizer.load(name_or_path)`` reads ``tokenizer.json``, WordPiece ``vocab.txt``, byte-level BPE
``vocab.json`` + ``merges.txt`` or SentencePiece models; encoding runs in the ``tokenizers`` library.
"""

from isoform.tokenization.batch import BatchEncoding
from isoform.tokenization.tokenizer import Tokenizer

__all__ = ["BatchEncoding", "Tokenizer"]
