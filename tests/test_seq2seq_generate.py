"""Seq2seq `Model.generate` (encoder once, cached decoder steps, the shared search code) is token for
token transformers' `generate`: greedy and beam search on batched inputs of different lengths, every
family and backend, with forced bos/eos, no_repeat_ngram_size, length_penalty, num_return_sequences."""

from __future__ import annotations

import numpy as np
import pytest
from test_seq2seq import BART, T5, hf_class, make_inputs

import isoform
from isoform.errors import InputError

torch = pytest.importorskip("torch")

NEW = 8
# transformers sizes generate's DynamicCache by the *encoder* layer count: decoders here have fewer layers
T5_GEN = dict(T5, num_layers=3, num_decoder_layers=2)
BART_GEN = dict(BART, encoder_layers=3, decoder_layers=2, encoder_no_repeat_ngram_size=0)
FAMILIES = [("T5", T5_GEN), ("MT5", T5_GEN), ("Bart", BART_GEN), ("MBart", BART_GEN), ("Pegasus", BART_GEN),
            ("Marian", BART_GEN), ("Blenderbot", BART_GEN), ("BlenderbotSmall", BART_GEN), ("M2M100", BART_GEN)]
OPTIONS = [dict(num_beams=1), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2, length_penalty=0.6,
                                                     no_repeat_ngram_size=2)]


def hf_generate(hf, inputs, **options) -> np.ndarray:
    with torch.no_grad():
        return hf.generate(torch.from_numpy(inputs["input_ids"]), attention_mask=torch.from_numpy(inputs["attention_mask"]),
                           max_new_tokens=NEW, do_sample=False, **options).numpy()


@pytest.mark.parametrize(("cls", "config"), FAMILIES, ids=[f for f, _ in FAMILIES])
def test_generate_matches_transformers(hf_checkpoint, backend, cls, config):
    path, hf = hf_checkpoint(hf_class(cls, "seq2seq-lm"), **config)
    model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
    inputs = {k: v for k, v in make_inputs(config).items() if not k.startswith("decoder_")}
    for options in OPTIONS:
        want = hf_generate(hf, inputs, **options)
        got = model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=NEW, **options)
        np.testing.assert_array_equal(got, want, err_msg=str(options))
    assert want.shape[1] > 3  # not stopped at once: the comparison covers several steps


@pytest.mark.parametrize("cls", ["MBart", "M2M100"])
def test_forced_target_language(hf_checkpoint, cls):
    """mBART-50 / M2M100 translation: the first generated token is the target-language token."""
    path, hf = hf_checkpoint(hf_class(cls, "seq2seq-lm"), **BART_GEN)
    model = isoform.Model.load(path, task="seq2seq-lm")
    inputs = {k: v for k, v in make_inputs(BART_GEN).items() if not k.startswith("decoder_")}
    for options in (dict(num_beams=1), dict(num_beams=3)):
        want = hf_generate(hf, inputs, forced_bos_token_id=42, forced_eos_token_id=2, **options)
        got = model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=NEW,
                             forced_bos_token_id=42, forced_eos_token_id=2, **options)
        np.testing.assert_array_equal(got, want)
        assert (got[:, 1] == 42).all()


def test_generate_bad_input(hf_checkpoint):
    path, _ = hf_checkpoint(hf_class("Bart", "seq2seq-lm"), **BART_GEN)
    model = isoform.Model.load(path, task="seq2seq-lm")
    ids = np.full((1, 5), 7)
    with pytest.raises(InputError, match=r"num_return_sequences \(4\) must be <= num_beams \(3\)"):
        model.generate(ids, num_beams=3, num_return_sequences=4)
    with pytest.raises(InputError, match="longer than this model's maximum 40"):
        model.generate(np.full((1, 41), 7))
    with pytest.raises(InputError, match="forced_bos_token_id"):
        model.generate(ids, forced_bos_token_id=99)
