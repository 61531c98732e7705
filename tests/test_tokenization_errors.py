"""Bad input to isoform.Tokenizer: clear TokenizerErrors, never a raw traceback from tokenizers."""

import shutil

import pytest
from conftest_tokenization import tokenizer_dirs  # noqa: F401  (session fixture)

from isoform.errors import HubError, TokenizerError
from isoform.tokenization import Tokenizer


@pytest.fixture(scope="module")
def bert(tokenizer_dirs):  # noqa: F811
    return Tokenizer.load(tokenizer_dirs["wordpiece"])


@pytest.fixture(scope="module")
def gpt2(tokenizer_dirs):  # noqa: F811
    return Tokenizer.load(tokenizer_dirs["gpt2"])


def test_missing_files_lists_what_was_looked_for(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerError) as info:
        Tokenizer.load(tmp_path)
    message = str(info.value)
    for name in ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt", "spiece.model", "tokenizer.model"):
        assert name in message
    assert "config.json" in message  # what was found


def test_missing_directory(tmp_path):
    with pytest.raises(HubError, match="does not exist"):
        Tokenizer.load(tmp_path / "nope")


def test_corrupt_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nope"}}')
    with pytest.raises(TokenizerError, match=r"tokenizer\.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize("name", ["spiece.model", "tokenizer.model", "sentencepiece.bpe.model"])
def test_corrupt_sentencepiece_model(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\xffthis is not a protobuf\x13\x37" * 10)
    with pytest.raises(TokenizerError, match=name.replace(".", r"\.")):
        Tokenizer.load(tmp_path)


def test_corrupt_configs(tmp_path, tokenizer_dirs):  # noqa: F811
    shutil.copy(tokenizer_dirs["wordpiece"] / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "vocab.txt").write_text("")
    with pytest.raises(TokenizerError, match="empty"):
        Tokenizer.load(tmp_path)


def test_bad_merges(tmp_path, tokenizer_dirs):  # noqa: F811
    shutil.copy(tokenizer_dirs["gpt2"] / "vocab.json", tmp_path / "vocab.json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n")
    with pytest.raises(TokenizerError, match=r"merges\.txt"):
        Tokenizer.load(tmp_path)


@pytest.mark.parametrize("bad", [None, 3, 4.5, b"bytes", ["ok", 7], [("a", 1)], [("a", "b", "c")], {"a": 1}])
def test_non_string_input(bert, bad):
    with pytest.raises(TokenizerError):
        bert(bad)


def test_non_string_encode(bert):
    with pytest.raises(TokenizerError, match="str"):
        bert.encode(["a", "b"])
    with pytest.raises(TokenizerError):
        bert("a", 5)


def test_mixed_pairs_and_singles(bert):
    with pytest.raises(TokenizerError, match="pairs"):
        bert(["a", ("b", "c")])


def test_max_length_smaller_than_special_tokens(bert):
    with pytest.raises(TokenizerError, match="special tokens"):
        bert("hello world", truncation=True, max_length=1)
    with pytest.raises(TokenizerError, match="special tokens"):
        bert("hello", "world", truncation=True, max_length=2)
    assert len(bert("hello world", truncation=True, max_length=3)["input_ids"]) == 3
    assert len(bert("hello world", truncation=True, max_length=1, add_special_tokens=False)["input_ids"]) == 1


def test_stride_too_large(bert):
    with pytest.raises(TokenizerError, match="stride"):
        bert("hello world " * 20, truncation=True, max_length=8, stride=6, return_overflowing_tokens=True)


def test_padding_without_pad_token(gpt2):
    assert gpt2.pad_token is None
    with pytest.raises(TokenizerError, match="no pad token"):
        gpt2(["a", "bb cc"], padding=True)
    gpt2.set_pad_token(gpt2.eos_token)
    out = gpt2(["a", "bb cc"], padding=True, return_tensors="np")
    assert out["input_ids"].shape[0] == 2


def test_bad_options(bert):
    with pytest.raises(TokenizerError, match="padding"):
        bert("a", padding="sideways")
    with pytest.raises(TokenizerError, match="truncation"):
        bert("a", truncation="middle")
    with pytest.raises(TokenizerError, match="max_length"):
        bert("a", truncation=True, max_length=-3)
    with pytest.raises(TokenizerError, match="return_tensors"):
        bert(["a"], return_tensors="cupy")


def test_ragged_tensors_need_padding(bert):
    with pytest.raises(TokenizerError, match="padding=True"):
        bert(["a", "a b c d"], return_tensors="np")


def test_decode_bad_ids(bert):
    with pytest.raises(TokenizerError, match="token ids"):
        bert.decode("not ids")
