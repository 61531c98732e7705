"""RoFormerTokenizer's jieba segmentation with Chinese words in the vocabulary, against transformers.

transformers 5 reads a bare ``vocab.txt`` with the file path as jieba's vocabulary (see
`isoform.tokenization.families.roformer`), so the reference here is its tokenizer.json load, which
tests words against the real vocabulary; isoform gives the same from either file.
"""

import sys
import warnings

import pytest
from conftest_tokenization import EDGE, PAIRS, build_roformer
from test_tokenization import FIELDS, same

from isoform.errors import TokenizerError
from isoform.tokenization import Tokenizer

transformers = pytest.importorskip("transformers")
pytest.importorskip("rjieba")

WORDS = ["北京", "天安门", "今天", "天气", "非常", "日本", "学习", "机器", *"今气好学习机器年奥运会"]
TEXTS = [
    "今天天气非常好。", "我爱北京天安门。", "机器学习 is fun, 非常fun!", "日本語のテキストです。",
    "北京2024年奥运会 hello北京world", "  北京  天气\t非常 好  ", *EDGE,
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(vocab.txt directory with Chinese words, transformers' save_pretrained of it)."""
    src, saved = tmp_path_factory.mktemp("roformer-words"), tmp_path_factory.mktemp("roformer-words-saved")
    build_roformer(src)
    with open(src / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("".join(w + "\n" for w in WORDS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(saved))
        ref = transformers.AutoTokenizer.from_pretrained(str(saved))
    return src, saved, ref


@pytest.mark.parametrize("which", ["vocab.txt", "tokenizer.json"])
def test_jieba_words_match_transformers(dirs, which, tmp_path):
    src, saved, ref = dirs
    mine = Tokenizer.load(src if which == "vocab.txt" else saved)
    assert mine.tokenize("我爱北京天安门。") == ref.tokenize("我爱北京天安门。") == ["我", "爱", "北京", "天安门", "。"]
    for text in TEXTS:
        assert mine.tokenize(text) == ref.tokenize(text), repr(text)
        same(mine(text, **FIELDS), ref(text, **FIELDS), repr(text))
    same(dict(mine(PAIRS, **FIELDS)), dict(ref(PAIRS, **FIELDS)), "pairs")
    mine.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.tokenize(TEXTS[0]) == ref.tokenize(TEXTS[0])
    ids = ref(TEXTS)["input_ids"]
    assert mine.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)


def test_missing_rjieba_names_the_extra(dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "rjieba", None)  # import rjieba -> ImportError
    with pytest.raises(TokenizerError, match=r"rjieba.*pip install 'isoform\[roformer\]'"):
        Tokenizer.load(dirs[0])
