"""Tokenizers for every Hugging Face tokenizer format, token-for-token with transformers.

``Tokenizer.load(directory)`` reads ``tokenizer.json``, WordPiece ``vocab.txt``, byte-level BPE
``vocab.json`` + ``merges.txt`` or SentencePiece models; encoding runs in the ``tokenizers`` library.
Each tokenizer family is one module of `isoform.tokenization.families`. Names (aliases, Hugging
Face repo ids) are resolved by ``isoform.Tokenizer.load``, outside this package.
"""

from isoform.tokenization.batch import BatchEncoding
from isoform.tokenization.tokenizer import Tokenizer

__all__ = ["BatchEncoding", "Tokenizer"]
