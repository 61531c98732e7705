"""Fuzz isoform.Tokenizer: mutated tokenizer files and hostile call options either work or raise a
TokenizerError naming the problem, never a bare exception from ``tokenizers`` or isoform, never a hang.

Budget: ``ISOFORM_FUZZ_SECONDS`` per target (see `isoform.testing.fuzz`); a failure names its seed,
``ISOFORM_FUZZ_SEED=<seed>`` replays it.
"""

import json
import pathlib
import shutil

import numpy as np
import pytest
from conftest_tokenization import EDGE, PAIRS, tokenizer_dirs  # noqa: F401  (session fixture)

from isoform.errors import TokenizerError
from isoform.testing.fuzz import fuzz, hostile_value, mutate_bytes, mutate_json
from isoform.tokenization import Tokenizer

#: small directories holding tokenizer.json, tokenizer_config.json and special_tokens_map.json
JSON_BASES = ("wordpiece-saved", "roberta-saved", "tokenizer-json")
#: directories whose configs are mutated: each file format (vocab.txt, vocab.json + merges, .model, tokenizer.json)
CONFIG_BASES = ("wordpiece", "gpt2", "roberta", "t5", "wordpiece-saved", "roberta-saved")
CONFIGS = ("tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def bases(tokenizer_dirs):  # noqa: F811
    """{name: {file name: bytes}} of the base directories (each built once per session)."""
    return {
        name: {p.name: p.read_bytes() for p in tokenizer_dirs[name].iterdir() if p.is_file()}
        for name in dict.fromkeys(JSON_BASES + CONFIG_BASES)
    }


@pytest.fixture
def scratch(tmp_path):
    def write(files):
        """A fresh directory holding ``files`` ({name: bytes})."""
        directory = tmp_path / "case"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        for name, data in files.items():
            (directory / name).write_bytes(data)
        return directory

    return write


def exercise(directory: pathlib.Path, rng: np.random.Generator) -> None:
    """Load ``directory`` and make a few calls, as a user would."""
    tok = Tokenizer.load(directory)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # GPT-2's way
    max_length = int(rng.integers(2, 16))
    out = tok(["a b", "c"], padding=True, truncation=True, max_length=max_length)
    assert all(len(row) == len(out["input_ids"][0]) for row in out["input_ids"])
    assert all(len(row) <= max_length for row in out["input_ids"])
    tok.decode(out["input_ids"][0], skip_special_tokens=bool(rng.integers(2)))
    tok.tokenize(str(rng.choice(EDGE)))
    tok("Hello there", "pair text")
    assert (tok.backend.truncation, tok.backend.padding) == (None, None)


def check(report) -> None:
    print(report)
    assert report.cases > 0


# ----- (a) tokenizer.json mutated --------------------------------------------------------------------
def json_tree_target(bases, write):
    def target(rng):
        files = dict(bases[JSON_BASES[int(rng.integers(len(JSON_BASES)))]])
        tree = json.loads(files["tokenizer.json"])
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.1 or not isinstance(tree, dict) or not tree:
                tree = mutate_json(tree, rng)
            else:  # one section (model, normalizer, added_tokens, post_processor, ...)
                key = list(tree)[int(rng.integers(len(tree)))]
                tree[key] = mutate_json(tree[key], rng)
        files["tokenizer.json"] = json.dumps(tree).encode()
        exercise(write(files), rng)

    return target


def json_bytes_target(bases, write):
    def target(rng):
        files = dict(bases[JSON_BASES[int(rng.integers(len(JSON_BASES)))]])
        data = files["tokenizer.json"]
        for _ in range(int(rng.integers(1, 4))):
            data = mutate_bytes(data, rng)
        files["tokenizer.json"] = data
        exercise(write(files), rng)

    return target


def test_fuzz_tokenizer_json_tree(bases, scratch):
    check(fuzz("tokenizer.json (tree)", json_tree_target(bases, scratch)))


def test_fuzz_tokenizer_json_bytes(bases, scratch):
    check(fuzz("tokenizer.json (bytes)", json_bytes_target(bases, scratch)))


# ----- (b) tokenizer_config.json / special_tokens_map.json mutated ------------------------------------
def _mutated_config(files, rng):
    name = CONFIGS[int(rng.integers(len(CONFIGS)))]
    tree = json.loads(files.get(name, b"{}"))
    r = rng.random()
    if r < 0.2:  # a key every family reads, set to a hostile value
        keys = [
            "model_max_length", "padding_side", "truncation_side", "model_input_names", "tokenizer_class",
            "pad_token", "unk_token", "cls_token", "eos_token", "added_tokens_decoder",
            "additional_special_tokens", "extra_special_tokens", "do_lower_case", "add_prefix_space",
            "extra_ids", "legacy", "split_special_tokens", "clean_up_tokenization_spaces",
        ]  # fmt: skip
        tree[keys[int(rng.integers(len(keys)))]] = hostile_value(rng)
    elif r < 0.25:
        tree = hostile_value(rng)  # not an object at all
    else:
        tree = mutate_json(tree, rng, edits=int(rng.integers(1, 4)))
    files[name] = json.dumps(tree).encode()


def config_tree_target(bases, write):
    def target(rng):
        files = dict(bases[CONFIG_BASES[int(rng.integers(len(CONFIG_BASES)))]])
        _mutated_config(files, rng)
        exercise(write(files), rng)

    return target


def config_bytes_target(bases, write):
    def target(rng):
        files = dict(bases[CONFIG_BASES[int(rng.integers(len(CONFIG_BASES)))]])
        name = CONFIGS[int(rng.integers(len(CONFIGS)))]
        files[name] = mutate_bytes(files.get(name, b"{}"), rng)
        exercise(write(files), rng)

    return target


def test_fuzz_configs_tree(bases, scratch):
    check(fuzz("tokenizer_config / special_tokens_map (tree)", config_tree_target(bases, scratch)))


def test_fuzz_configs_bytes(bases, scratch):
    check(fuzz("tokenizer_config / special_tokens_map (bytes)", config_bytes_target(bases, scratch)))


# ----- (c) call options and inputs --------------------------------------------------------------------
OPTIONS = {
    "padding": (True, False, "longest", "max_length", "do_not_pad"),
    "truncation": (True, False, None, "longest_first", "only_first", "only_second", "do_not_truncate"),
    "max_length": (None, 0, 1, 2, 5, 8, 16, 64),
    "stride": (0, 1, 2, 4),
    "pad_to_multiple_of": (None, 1, 4, 8),
    "padding_side": ("left", "right"),
    "return_tensors": (None, "np", "pt"),
    "add_special_tokens": (True, False),
    "return_overflowing_tokens": (True, False),
    "return_offsets_mapping": (True, False),
    "return_special_tokens_mask": (True, False),
    "return_length": (True, False),
    "return_attention_mask": (True, False, None),
    "return_token_type_ids": (True, False, None),
    "is_split_into_words": (False, False, False, True),
}
TEXTS = [*EDGE, "a b", "the quick brown fox " * 8]


def _text(rng, depth=0, long=True):
    """A text input, mostly valid: str, batch, pre-split words, or a wrong type (``long``: may be a
    very long text; not for a pair's second text, whose overflow windows multiply the first's)."""
    r = rng.random()
    if r < 0.35:
        return TEXTS[int(rng.integers(len(TEXTS)))]
    if r < 0.5:
        return [TEXTS[int(rng.integers(len(TEXTS)))] for _ in range(int(rng.integers(0, 4)))]
    if r < 0.55:
        return [PAIRS[int(rng.integers(len(PAIRS)))] for _ in range(int(rng.integers(1, 3)))]
    if r < 0.62:
        return "word " * int(rng.integers(2_000, 20_000)) if long and not depth else "word"  # very long
    if r < 0.67:
        return "".join(chr(int(c)) for c in rng.integers(0, 0x10FFFF, int(rng.integers(1, 40))) if not 0xD800 <= c < 0xE000)
    if r < 0.75 and depth < 2:
        return [_text(rng, depth + 1) for _ in range(int(rng.integers(1, 3)))]  # nested
    if r < 0.8:
        return [[int(rng.integers(9))], 3]
    return hostile_value(rng)


def _options(rng):
    out = {}
    for name, values in OPTIONS.items():
        r = rng.random()
        if r < 0.5:
            continue
        out[name] = hostile_value(rng) if r < 0.65 else values[int(rng.integers(len(values)))]
    return out


@pytest.fixture(scope="module")
def callers(tokenizer_dirs):  # noqa: F811
    """BERT WordPiece, byte-level BPE with a pad token, and GPT-2 without one."""
    toks = [Tokenizer.load(tokenizer_dirs[name]) for name in ("wordpiece", "roberta", "gpt2")]
    toks[0](["a b"], return_tensors="pt")  # import torch before the clock runs
    return toks


def call_target(callers):
    def target(rng):
        tok = callers[int(rng.integers(len(callers)))]
        entry = int(rng.integers(6))
        try:
            if entry == 0:
                tok(_text(rng), **_options(rng))
            elif entry == 1:
                tok(_text(rng), _text(rng, long=False), **_options(rng))
            elif entry == 2:
                tok.encode(_text(rng), **_options(rng))
            elif entry == 3:
                tok.tokenize(_text(rng), add_special_tokens=OPTIONS["add_special_tokens"][int(rng.integers(2))])
            elif entry == 4:
                tok(text_target=_text(rng), **_options(rng))
            else:
                ids = [hostile_value(rng) if rng.random() < 0.2 else int(rng.integers(-2, 800)) for _ in range(5)]
                tok.decode(ids, skip_special_tokens=bool(rng.integers(2)))
        finally:
            assert (tok.backend.truncation, tok.backend.padding) == (None, None), "a call left its options set"

    return target


def test_fuzz_call_options(callers):
    check(fuzz("call options and inputs", call_target(callers)))


def test_fuzzed_options_name_the_option(callers):
    """Refusals of hostile options say which option is wrong."""
    tok = callers[0]
    for name, value in [("max_length", 2**64), ("stride", -1), ("stride", "x"), ("pad_to_multiple_of", 0.5),
                        ("padding_side", "up"), ("add_special_tokens", "yes"), ("max_length", float("nan"))]:
        options = {name: value, "truncation": True, "padding": True}
        if name == "max_length" and value == 2**64:
            assert tok("a b", **options)["input_ids"]  # unreachable: no truncation
            continue
        with pytest.raises(TokenizerError, match=name):
            tok("a b", **options)
    with pytest.raises(TokenizerError, match="pad_to_multiple_of=1099511627776"):
        tok(["a"], padding=True, pad_to_multiple_of=2**40)
    with pytest.raises(TokenizerError, match="max_length=1099511627776"):
        tok(["a"], padding="max_length", max_length=2**40)
