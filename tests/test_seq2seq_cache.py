"""The cached seq2seq decoder (encoder graph once, static self-attention cache, fixed cross cache)
gives the logits of the uncached task graph at every step, on every backend and family; rows
reorder and expand like beams."""

from __future__ import annotations

import numpy as np
import pytest
from test_bert_family import reference
from test_seq2seq import BART, T5, hf_class, make_inputs

import isoform
from isoform.errors import ConfigError, InputError
from isoform.testing.parity import record_model

pytest.importorskip("torch")

FAMILIES = [("T5", dict(T5, feed_forward_proj="gated-gelu")), ("Bart", BART), ("MBart", BART), ("Pegasus", BART),
            ("Marian", BART), ("Blenderbot", BART), ("BlenderbotSmall", BART), ("M2M100", BART)]


def uncached(model, inputs, tokens: np.ndarray) -> np.ndarray:
    start = np.full((tokens.shape[0], 1), model.arch.decoder_start_token_id)
    dec = np.concatenate([start, tokens], axis=1)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], decoder_input_ids=dec)
    return out.numpy()["logits"][:, -1]


@pytest.mark.parametrize(("cls", "config"), FAMILIES, ids=[f for f, _ in FAMILIES])
def test_cached_steps_match_uncached(hf_checkpoint, backend, cls, config):
    path, _ = hf_checkpoint(hf_class(cls, "seq2seq-lm"), **config)
    model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
    inputs = make_inputs(config)
    tokens = np.random.default_rng(1).integers(3, config["vocab_size"], (2, 4))
    dec = model.decoder()
    got = [dec.prefill(inputs["input_ids"], inputs["attention_mask"], max_new_tokens=5)]
    got += [dec.step(tokens[:, t]) for t in range(tokens.shape[1])]
    for t, logits in enumerate(got):
        np.testing.assert_allclose(logits, uncached(model, inputs, tokens[:, :t]), atol=1e-4, rtol=0)


def test_reorder_expands_and_permutes(hf_checkpoint, backend):
    path, _ = hf_checkpoint(hf_class("T5", "seq2seq-lm"), **T5)
    model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
    inputs = make_inputs(T5)
    tokens = np.array([[5, 6], [7, 8]])
    dec = model.decoder()
    dec.prefill(inputs["input_ids"], inputs["attention_mask"], max_new_tokens=4)
    dec.step(tokens[:, 0])
    dec.reorder(np.array([1, 1, 0]))  # expand to 3 rows, swapped sources
    got = dec.step(np.array([8, 9, 6]))
    want = uncached(model, {k: v[[1, 0]] for k, v in inputs.items()}, np.array([[7, 8], [5, 6]]))
    np.testing.assert_allclose(got[[0, 2]], want, atol=1e-4, rtol=0)
    dec.reorder(np.array([2, 0, 1]))  # rows change source again (checked in the test below)
    assert dec.batch_size == 3


@pytest.mark.parametrize(("cls", "config"), FAMILIES[:2], ids=[f for f, _ in FAMILIES[:2]])
def test_same_size_reorder_across_sources_matches_transformers(hf_checkpoint, backend, cls, config):
    """Beam search at a fixed batch size moves rows to another source: after ``reorder([1, 0])`` and then
    ``reorder([1, 1])``, the self-attention cache AND the cross-attention keys/values (and encoder mask)
    follow the rows, so the next step gives the logits of transformers' uncached forward on the
    correspondingly permuted sources and decoder inputs."""
    path, hf = hf_checkpoint(hf_class(cls, "seq2seq-lm"), **config)
    inputs = make_inputs(config)  # row 1 of the source padded: the two rows differ in length too
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    tokens = np.random.default_rng(2).integers(3, config["vocab_size"], (2, 3))
    history = np.concatenate([np.full((2, 1), hf.config.decoder_start_token_id), tokens], axis=1)
    model = isoform.Model.load(path, backend=backend, task="seq2seq-lm")
    dec = model.decoder()
    dec.prefill(ids, mask, max_new_tokens=4)
    dec.step(tokens[:, 0])
    rows = np.arange(2)  # the source each decoder row continues
    for step, index in enumerate(([1, 0], [1, 1]), start=1):
        dec.reorder(np.array(index))
        rows = rows[index]
        got = dec.step(tokens[rows, step])
        assert dec.batch_size == 2
        want = reference(hf, {"input_ids": ids[rows], "attention_mask": mask[rows],
                              "decoder_input_ids": history[rows, :step + 2]})["logits"][:, -1]
        assert record_model(model, float(np.abs(got - want).max())) <= 1e-4, f"after reorder({index})"


def test_bad_input(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint(hf_class("Bart", "seq2seq-lm"), **BART)
    model = isoform.Model.load(path, task="seq2seq-lm")
    dec = model.decoder()
    with pytest.raises(InputError, match="max_position_embeddings"):
        dec.prefill(np.full((1, 41), 5), np.ones((1, 41), np.int64), max_new_tokens=3)
    with pytest.raises(InputError, match="max_new_tokens is 40"):
        dec.prefill(np.full((1, 4), 5), np.ones((1, 4), np.int64), max_new_tokens=40)
    with pytest.raises(InputError, match="before prefill"):
        dec.step(np.zeros(0, np.int64))
    with pytest.raises(ConfigError, match="seq2seq-lm"):
        isoform.Model.load(path).decoder()
    t5_path, _ = hf_checkpoint(hf_class("T5", "seq2seq-lm"), **dict(T5, decoder_start_token_id=None))
    with pytest.raises(ConfigError, match="'decoder_start_token_id'"):
        isoform.Model.load(t5_path, task="seq2seq-lm").decoder()
