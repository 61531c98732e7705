"""``isoform run`` on encoder-decoder checkpoints: a tiny random-init T5 / mBART saved next to a
SentencePiece tokenizer trained here; the printed text must be transformers' ``generate`` output
decoded by transformers' own tokenizer (junk text from random weights, but the same junk)."""

from __future__ import annotations

import warnings

import pytest
from conftest_tokenization import _write_json

from isoform.cli import main

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPT = "translate English to German: hello"
TEXT = ["translate English to German: hello world", "the cat sat on the mat", "a dog ran in the fog",
        "summarize: one two three four five six", "Das Haus ist blau und der Hund schläft."] * 40  # fmt: skip


def _spm(path, name, vocab_size, **kwargs):
    """A SentencePiece Unigram model trained on TEXT, small enough for a tiny model's vocabulary."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_prefix=str(path / "spm"), vocab_size=vocab_size, model_type="unigram",
        hard_vocab_limit=False, minloglevel=2, num_threads=1, **kwargs,
    )  # fmt: skip
    (path / "spm.model").rename(path / name)
    (path / "spm.vocab").unlink()


def _checkpoint(path, cls_name, config, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(seed)
    cls = getattr(transformers, cls_name)
    model = cls(cls.config_class(vocab_size=len(tok), **config)).eval()
    model.save_pretrained(path)
    return model, tok


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    path = tmp_path_factory.mktemp("t5-with-spiece")
    _spm(path, "spiece.model", 80, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    _write_json(path / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer", "extra_ids": 8})
    config = dict(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0,
                  pad_token_id=0, eos_token_id=1)  # fmt: skip
    return (path, *_checkpoint(path, "T5ForConditionalGeneration", config))


@pytest.fixture(scope="module")
def mbart(tmp_path_factory):
    path = tmp_path_factory.mktemp("mbart-with-spm")
    _spm(path, "sentencepiece.bpe.model", 70)
    _write_json(path / "tokenizer_config.json", {"tokenizer_class": "MBartTokenizer", "src_lang": "en_XX"})
    config = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                  encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                  eos_token_id=2, decoder_start_token_id=2)  # fmt: skip
    return (path, *_checkpoint(path, "MBartForConditionalGeneration", config))


def hf_text(model, tok, **options) -> str:
    enc = tok(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, **options)
    return tok.decode(out[0], skip_special_tokens=True)


def test_run_t5_prints_the_generated_text(t5, backend, capsys):
    path, model, tok = t5
    assert main(["run", str(path), "--prompt", PROMPT, "--backend", backend, "--max-new-tokens", "5"]) == 0
    expected = hf_text(model, tok, max_new_tokens=5)
    assert expected.strip(), "random weights generated only special tokens: the check would be vacuous"
    assert capsys.readouterr().out == expected + "\n"


def test_run_mbart_beam_search(mbart, capsys):
    """Beam search (greedy on this random mBART stops at once on </s>; T5 above covers greedy)."""
    path, model, tok = mbart
    assert main(["run", str(path), "--prompt", PROMPT, "--max-new-tokens", "6", "--num-beams", "3"]) == 0
    expected = hf_text(model, tok, max_new_tokens=6, num_beams=3)
    assert expected.strip(), "random weights generated only special tokens: the check would be vacuous"
    assert capsys.readouterr().out == expected + "\n"
