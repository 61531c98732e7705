"""Bad input to isoform.Tokenizer: clear TokenizerErrors, never a raw traceback from tokenizers.

Each ``pytest.raises`` matches the distinctive words of its message (which input, key or file is
wrong), so a message that stops saying so fails here.
"""

import shutil

import pytest
from conftest_tokenization import tokenizer_dirs  # noqa: F401  (session fixture)

from isoform.errors import HubError, TokenizerError
from isoform.tokenization import Tokenizer


@pytest.fixture(scope="module")
def bert(tokenizer_dirs):  # noqa: F811
    return Tokenizer.load(tokenizer_dirs["wordpiece"])


@pytest.fixture
def gpt2(tokenizer_dirs):  # noqa: F811
    """A fresh GPT-2 tokenizer (no pad token): the tests below set one."""
    return Tokenizer.load(tokenizer_dirs["gpt2"])


def test_missing_files_lists_what_was_looked_for(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerError, match=r"no tokenizer files in .*: looked for") as info:
        Tokenizer.load(tmp_path)
    message = str(info.value)
    for name in ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt", "spiece.model", "tokenizer.model"):
        assert name in message
    assert "found config.json" in message  # what was found


def test_missing_directory(tmp_path):
    with pytest.raises(HubError, match="does not exist"):
        Tokenizer.load(tmp_path / "nope")


def test_corrupt_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    with pytest.raises(TokenizerError, match=r"tokenizer\.json is not a valid tokenizer\.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json is not a valid tokenizer\.json"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize("name", ["spiece.model", "tokenizer.model", "sentencepiece.bpe.model"])
def test_corrupt_sentencepiece_model(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\xffthis is not a protobuf\x13\x37" * 10)
    with pytest.raises(TokenizerError, match=name.replace(".", r"\.") + " is not a SentencePiece model"):
        Tokenizer.load(tmp_path)


def test_corrupt_configs(tmp_path, tokenizer_dirs):  # noqa: F811
    shutil.copy(tokenizer_dirs["wordpiece"] / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json is not valid JSON"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json must hold a JSON object"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("")
    with pytest.raises(TokenizerError, match=r"vocab\.txt is empty"):
        Tokenizer.load(tmp_path)


def test_bad_merges(tmp_path, tokenizer_dirs):  # noqa: F811
    shutil.copy(tokenizer_dirs["gpt2"] / "vocab.json", tmp_path / "vocab.json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(TokenizerError, match=r"merges\.txt: bad merge line 'a b c' \(expected two tokens\)"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize(
    "bad, message",
    [
        (None, "pass text=, text_target= or both"),
        (3, r"text must be a str, a list of str or a list of \(str, str\) pairs, got int"),
        (4.5, "text must be a str.*, got float"),
        (b"bytes", "text must be a str.*, got bytes"),
        (["ok", 7], "input 1 must be a str, got int: 7"),
        ([("a", 1)], r"input 0 \(pair\) must be a str, got int: 1"),
        ([("a", "b", "c")], "input 0: a pair must have two texts, got 3"),
        ({"a": 1}, "text must be a str.*, got dict"),
    ],
)
def test_non_string_input(bert, bad, message):
    with pytest.raises(TokenizerError, match=message):
        bert(bad)


def test_non_string_encode(bert):
    with pytest.raises(TokenizerError, match=r"encode\(\) takes one text \(str\), got list"):
        bert.encode(["a", "b"])
    with pytest.raises(TokenizerError, match="text_pair must be a str, got int: 5"):
        bert("a", 5)
    with pytest.raises(TokenizerError, match="text_pair must be a list with one entry per text"):
        bert(["a", "b"], ["c"])


def test_mixed_pairs_and_singles(bert):
    with pytest.raises(TokenizerError, match="a batch must be all single texts or all pairs"):
        bert(["a", ("b", "c")])


def test_max_length_smaller_than_special_tokens(bert):
    with pytest.raises(TokenizerError, match="max_length=1 is too small: the special tokens alone need 2"):
        bert("hello world", truncation=True, max_length=1)
    with pytest.raises(TokenizerError, match=r"max_length=2 is too small: .* need 3 positions for a pair"):
        bert("hello", "world", truncation=True, max_length=2)
    assert len(bert("hello world", truncation=True, max_length=3)["input_ids"]) == 3
    assert len(bert("hello world", truncation=True, max_length=1, add_special_tokens=False)["input_ids"]) == 1


def test_stride_too_large(bert):
    with pytest.raises(
        TokenizerError, match=r"stride=6 must be smaller than max_length minus special tokens \(6\)"
    ):
        bert("hello world " * 20, truncation=True, max_length=8, stride=6, return_overflowing_tokens=True)


def test_pair_truncation_refused(bert):
    with pytest.raises(
        TokenizerError, match="truncation='only_first' cannot cut a pair to max_length=6: its first"
    ):
        bert("hi", "a much longer second text", truncation="only_first", max_length=6)
    with pytest.raises(TokenizerError, match=r"truncation='only_second' cannot cut a pair .*: its second"):
        bert("a much longer first text", "hi", truncation="only_second", max_length=6)
    with pytest.raises(TokenizerError, match="truncation='only_second' needs text pairs"):
        bert("hello world again", truncation="only_second", max_length=4)


def test_padding_without_pad_token(gpt2):
    assert gpt2.pad_token is None
    with pytest.raises(TokenizerError, match="padding was requested but this tokenizer has no pad token"):
        gpt2(["a", "bb cc"], padding=True)
    gpt2.set_pad_token(gpt2.eos_token)
    out = gpt2(["a", "bb cc"], padding=True, return_tensors="np")
    assert out["input_ids"].shape[0] == 2


def test_special_token_assignment(gpt2):
    """``tok.pad_token = ...`` / ``tok.pad_token_id = ...`` configure padding, as in transformers."""
    gpt2.pad_token = gpt2.eos_token
    assert (gpt2.pad_token, gpt2.pad_token_id) == (gpt2.eos_token, gpt2.eos_token_id)
    assert gpt2(["a", "bb cc"], padding=True)["input_ids"][0][-1] == gpt2.eos_token_id
    gpt2.pad_token_id = 5
    assert gpt2.pad_token == gpt2.convert_ids_to_tokens(5)
    assert gpt2(["a", "bb cc"], padding=True)["input_ids"][0][-1] == 5
    gpt2.pad_token = None
    with pytest.raises(TokenizerError, match="no pad token"):
        gpt2(["a", "bb cc"], padding=True)
    with pytest.raises(TokenizerError, match="pad_token 'not-in-vocab' is not in the vocabulary"):
        gpt2.pad_token = "not-in-vocab"
    with pytest.raises(TokenizerError, match="pad_token_id=99999 is not a token id of this tokenizer"):
        gpt2.pad_token_id = 99999


def test_bad_options(bert):
    with pytest.raises(
        TokenizerError, match="padding must be True, False, 'longest' or 'max_length', got 'sideways'"
    ):
        bert("a", padding="sideways")
    with pytest.raises(TokenizerError, match=r"truncation must be True, False or one of .*, got 'middle'"):
        bert("a", truncation="middle")
    with pytest.raises(TokenizerError, match="max_length must be a non-negative int, got -3"):
        bert("a", truncation=True, max_length=-3)
    with pytest.raises(
        TokenizerError, match="return_tensors must be one of np, pt, jax, tf or None, got 'cupy'"
    ):
        bert(["a"], return_tensors="cupy")


def test_ragged_tensors_need_padding(bert):
    with pytest.raises(
        TokenizerError, match=r"cannot make a tensor of 'input_ids': rows have different lengths"
    ):
        bert(["a", "a b c d"], return_tensors="np")


def test_decode_bad_ids(bert):
    with pytest.raises(TokenizerError, match="expected a sequence of token ids, got str"):
        bert.decode("not ids")
