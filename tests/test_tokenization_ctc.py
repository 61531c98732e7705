"""Wav2Vec2's CTC tokenizer (``Wav2Vec2CTCTokenizer``) against transformers' AutoTokenizer.

The format-independent checks of ``test_tokenization`` run here on this module's ``pair`` fixture (the
``wav2vec2*`` directories of ``conftest_tokenization`` and their ``-saved`` copies); transformers' class
is a slow (Python) one, so offsets are not compared and its known limits are strict xfails. The tests
below compare CTC decoding (``decode`` / ``batch_decode`` of argmax ids of CTC logits) with its options.
"""

import numpy as np
import pytest
from conftest_tokenization import EDGE, SAVED, tokenizer_dirs  # noqa: F401  (session fixture)
from test_tokenization import (  # noqa: F401  (collected here with this module's `pair`)
    CASES,
    FIELDS,
    REFUSED,
    compare_pair,
    corpus,
    padded,
    pair_cases,
    reference,
    same,
    test_batch_padding,
    test_batch_unpadded,
    test_decode,
    test_overflow_windows,
    test_pairs_overflow,
    test_pairs_truncation,
    test_return_tensors,
    test_single_texts,
    test_split_into_words,
    test_vocab,
)
from test_tokenization_seq2seq import WithoutOffsets

from isoform.errors import TokenizerError
from isoform.tokenization import Tokenizer

transformers = pytest.importorskip("transformers")

BASE = ["wav2vec2", "wav2vec2-xlsr"]
NAMES = [*BASE, *(n + SAVED for n in BASE)]
# transformers' slow class: as M2M100 / Marian in test_tokenization_seq2seq (a strategy list: only with
# those truncation strategies); test_pairs_truncation_ctc runs the cases that do compare
SLOW_LIMITS = {
    "test_pairs_truncation": (
        None,
        "transformers' slow Wav2Vec2CTCTokenizer never refuses a pair it cannot cut (it logs an error and "
        "returns it untruncated, where isoform raises TokenizerError as the fast classes do), and it leaves "
        "a pair untruncated for max_length=0 (no special tokens: the cut to nothing), where isoform empties "
        "it",
    ),
    "test_pairs_overflow": (
        None,
        "transformers' slow Wav2Vec2CTCTokenizer returns no overflow windows for pairs with longest_first "
        "(ValueError) and no overflow_to_sample_mapping for a single pair",
    ),
    "test_overflow_windows": (
        None,
        "transformers' slow Wav2Vec2CTCTokenizer cannot return the overflow windows of a batch "
        "(BatchEncoding: 'different batch size')",
    ),
}


@pytest.fixture(params=NAMES)
def pair(request, tokenizer_dirs):  # noqa: F811
    """(isoform tokenizer without offsets, transformers tokenizer, directory)."""
    strategies, reason = SLOW_LIMITS.get(request.function.__name__, (None, None))
    if reason is not None and (strategies is None or request.node.callspec.params["strategy"] in strategies):
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    path = tokenizer_dirs[request.param]
    return WithoutOffsets(Tokenizer.load(path)), reference(path), path


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
def test_pairs_truncation_ctc(pair, strategy):
    """test_pairs_truncation's cases transformers' slow class cuts as the fast ones do: a max_length
    above 0 that leaves the text to cut a token (both refuse nothing there)."""
    mine, ref, _ = pair
    compared = 0
    for first, second, case, max_length, _ in pair_cases(ref, CASES):
        if max_length == 0 or case in REFUSED.get(strategy, ()):
            continue
        kwargs = dict(truncation=strategy, max_length=max_length, **FIELDS)
        assert compare_pair(mine, ref, first, second, strategy, case, kwargs) is not None
        compared += 1
    assert compared >= 8

def ctc_ids(ref, seed, batch=4, frames=60):
    """Argmax ids of random CTC logits (frames x vocabulary, the blank favoured, runs of repeated
    frames as a model emits them), over every id of ``ref`` (added ones included)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, frames // 3, len(ref)))
    logits[..., ref.pad_token_id] += 1.0
    return np.repeat(logits.argmax(-1), rng.integers(1, 4, size=frames // 3), axis=1)


@pytest.fixture(params=NAMES)
def ctc(request, tokenizer_dirs):  # noqa: F811
    path = tokenizer_dirs[request.param]
    return Tokenizer.load(path), reference(path)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("group_tokens", [True, False])
def test_ctc_batch_decode(ctc, skip, group_tokens):
    mine, ref = ctc
    for seed in range(3):
        ids = ctc_ids(ref, seed)
        kwargs = dict(skip_special_tokens=skip, group_tokens=group_tokens)
        expected = ref.batch_decode(ids, **kwargs)
        assert mine.batch_decode(ids, **kwargs) == expected
        assert mine.batch_decode(ids.tolist(), **kwargs) == expected
        assert [mine.decode(row, **kwargs) for row in ids] == expected
    plain = ref.batch_decode(ctc_ids(ref, 0))
    assert mine.batch_decode(ctc_ids(ref, 0)) == plain  # the defaults: grouped, special tokens kept
    assert any(plain) and any(" " in text for text in plain)  # words found, the delimiter a space


def test_ctc_decode_options(ctc):
    """``spaces_between_special_tokens``, ``clean_up_tokenization_spaces``, torch tensors, and ids
    outside the vocabulary (a CTC head may have more outputs than the vocabulary: unk)."""
    mine, ref = ctc
    ids = ctc_ids(ref, 7)
    for kwargs in (
        dict(spaces_between_special_tokens=True),
        dict(spaces_between_special_tokens=True, skip_special_tokens=True, group_tokens=False),
        dict(clean_up_tokenization_spaces=True),
    ):
        assert mine.batch_decode(ids, **kwargs) == ref.batch_decode(ids, **kwargs), kwargs
    torch = pytest.importorskip("torch")
    assert mine.batch_decode(torch.from_numpy(ids)) == ref.batch_decode(torch.from_numpy(ids))
    beyond = [*ids[0].tolist()[:10], len(ref), len(ref) + 3, ref.pad_token_id, len(ref)]
    for skip in (False, True):
        assert mine.decode(beyond, skip_special_tokens=skip) == ref.decode(beyond, skip_special_tokens=skip)


def test_ctc_round_trip(ctc):
    """The encoded text, each id repeated and blanks between, decodes as transformers decodes it."""
    mine, ref = ctc
    blank = ref.pad_token_id
    for text in [*EDGE, "hello world  again", "<s> a </s>"]:
        frames = [[i, i, blank] for i in ref(text)["input_ids"]]
        ids = [i for frame in frames for i in frame]
        for skip in (False, True):
            expected = ref.decode(ids, skip_special_tokens=skip)
            assert mine.decode(ids, skip_special_tokens=skip) == expected, text


def test_save_roundtrip_ctc(pair, tmp_path):
    """isoform's save (tokenizer.json plus the vocab.json the class reads) loads in both libraries."""
    mine, ref, _ = pair
    mine.save(tmp_path)
    assert (tmp_path / "vocab.json").is_file()
    again, ref_again = WithoutOffsets(Tokenizer.load(tmp_path)), reference(tmp_path)
    assert type(ref_again).__name__ == "Wav2Vec2CTCTokenizer"
    texts = corpus(mine, ref)
    ids = ctc_ids(ref, 3)
    for other in (again, ref_again):
        assert len(other) == len(ref)
        assert other.all_special_tokens == [str(t) for t in ref.all_special_tokens]
        same(dict(other(texts, **FIELDS)), dict(ref(texts, **FIELDS)), f"reloaded {type(other).__name__}")
        assert other.tokenize(texts[3]) == ref.tokenize(texts[3])
        for skip in (False, True):
            assert other.batch_decode(ids, skip_special_tokens=skip) == ref.batch_decode(
                ids, skip_special_tokens=skip
            )


def test_decode_options_of_other_families(tokenizer_dirs):  # noqa: F811
    """A tokenizer that does not decode CTC refuses its options (transformers' fast classes ignore them)."""
    tok = Tokenizer.load(tokenizer_dirs["clip"])
    with pytest.raises(TokenizerError, match="takes no group_tokens"):
        tok.decode([1, 2], group_tokens=False)
    with pytest.raises(TokenizerError, match="takes no output_word_offsets"):
        Tokenizer.load(tokenizer_dirs["wav2vec2"]).batch_decode([[1, 2]], output_word_offsets=True)
