"""Bad requests to `Model.generate` raise a clear isoform error naming the problem, before any compute
(also with ``stream=True``); a bad ``generation_config.json`` fails at load naming the key."""

from __future__ import annotations

import json

import numpy as np
import pytest

import isoform
from isoform.errors import ConfigError, InputError

GPT2 = dict(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16, eos_token_id=2, bos_token_id=1)


@pytest.fixture(scope="module")
def model(hf_checkpoint):
    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    return isoform.Model.load(path, task="causal-lm")


IDS = np.array([[5, 6, 7], [8, 9, 0]])
MASK = np.array([[1, 1, 1], [1, 1, 0]])
CASES = [
    (dict(max_new_tokens=0), "max_new_tokens: Input should be greater than 0"),
    (dict(max_new_tokens=-3), "max_new_tokens: Input should be greater than 0"),
    (dict(max_new_tokens=14), r"prompt has 3 tokens and max_new_tokens is 14: 17 positions.*context window of 16"),
    (dict(max_length=3), "max_length is 3 but the prompt already has 3 tokens"),
    (dict(do_sample=True, top_p=0.0), "top_p: Input should be greater than 0"),
    (dict(do_sample=True, top_p=1.2), "top_p: Input should be less than or equal to 1"),
    (dict(do_sample=True, temperature=0.0), "temperature must be > 0 when do_sample=True"),
    (dict(do_sample=True, temperature=-1.0), "temperature must be > 0 when do_sample=True"),
    (dict(do_sample=True, top_k=-1), "top_k: Input should be greater than or equal to 0"),
    (dict(repetition_penalty=0.0), "repetition_penalty: Input should be greater than 0"),
    (dict(num_beams=0), "num_beams: Input should be greater than or equal to 1"),
    (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences \(3\) must be <= num_beams \(2\)"),
    (dict(num_return_sequences=2), "num_return_sequences=2 needs do_sample=True or num_beams > 1"),
    (dict(num_beams=2, early_stopping=True, eos_token_id=None), "early_stopping=True with num_beams=2 needs an end"),
    (dict(num_beams=2, early_stopping="sometimes"), "early_stopping"),
    (dict(num_beams=2, stream=True), "streaming .* not beam search"),
    (dict(stop_strings=["x"]), "stop_strings need the model's tokenizer"),
    (dict(top_kk=3), r"unknown generation option\(s\) \['top_kk'\]"),
    (dict(num_beam_groups=2), "does not implement: num_beam_groups=2"),
    (dict(seed=-1), "seed must be a non-negative integer"),
]


@pytest.mark.parametrize(("options", "message"), CASES, ids=[next(iter(o)) + str(i) for i, (o, _) in enumerate(CASES)])
def test_bad_options(model, options, message):
    with pytest.raises(InputError, match=message):
        model.generate(IDS, MASK, **options)


@pytest.mark.parametrize(("ids", "mask", "message"), [
    (np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64), r"prompt\(s\) \[0, 1\] of the batch are empty"),
    (IDS, np.array([[1, 1, 1], [0, 0, 0]]), r"prompt\(s\) \[1\] of the batch are empty"),
    (np.zeros((2, 0), np.int64), None, "shape \\[batch, seq\\]|empty"),
    (IDS, np.array([[1, 0, 1], [1, 1, 0]]), r"rows \[0\] have padding between tokens"),
    (IDS, MASK[:, :2], "attention_mask has shape"),
    (IDS[0], None, r"shape \[batch, seq\]"),
    (IDS.astype(np.float32), None, "integer token ids"),
    (IDS + 60, None, "outside \\[0, 50\\)"),
    (np.ones((1, 17), np.int64), None, "17, longer than this model's maximum 16"),
])
def test_bad_prompts(model, ids, mask, message):
    with pytest.raises(InputError, match=message):
        model.generate(ids, mask, max_new_tokens=2, stream=True)


def test_task_must_be_generative(hf_checkpoint):
    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    with pytest.raises(InputError, match="task='causal-lm'"):
        isoform.Model.load(path).generate(IDS)


def test_text_generation_needs_a_generative_architecture(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                            intermediate_size=37)
    with pytest.raises(ConfigError, match=r"'text-generation'.*model_type 'bert' has no generative task"):
        isoform.Model.load(path, task="text-generation")
    assert isoform.Model.load(hf_checkpoint("GPT2LMHeadModel", **GPT2)[0], task="text-generation").task == "causal-lm"


def test_bad_generation_config_json(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    (tmp_path / "generation_config.json").write_text(json.dumps({"top_p": 2.0, "num_beams": "many"}))
    with pytest.raises(ConfigError, match=r"generation_config.json: top_p: .*less than or equal to 1.*num_beams"):
        isoform.Model.load(tmp_path, task="causal-lm")
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_new_tokens": 3, "eos_token_id": None}))
    model = isoform.Model.load(tmp_path, task="causal-lm")
    assert model.generate(IDS[:1]).shape == (1, 6)  # max_new_tokens from the file, eos disabled
