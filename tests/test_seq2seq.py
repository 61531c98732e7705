"""Parity with transformers for the encoder-decoder families (T5, mT5, BART, mBART, Pegasus, Marian,
Blenderbot, BlenderbotSmall, M2M100): every architecture x task head x backend, on random ids with a
padded encoder row; expected outputs are computed by transformers here, never pasted."""

from __future__ import annotations

import numpy as np
import pytest
import test_speech2text
from test_bert_family import max_diff, reference

import isoform
from isoform.architectures.seq2seq import EncoderDecoder
from isoform.errors import InputError
from isoform.testing.coverage import check_task_coverage
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

TOL = 1e-4
T5 = dict(vocab_size=99, d_model=32, d_kv=12, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
          relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0)
BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=40,
            pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2)
BASE = {None: "Model", "seq2seq-lm": "ForConditionalGeneration", "sequence-classification": "ForSequenceClassification",
        "question-answering": "ForQuestionAnswering"}
ALL, LM = list(BASE), [None, "seq2seq-lm"]

# (case id, transformers class prefix, config, tasks)
FAMILIES = [
    ("t5", "T5", T5, ALL),
    ("t5-gated-untied", "T5", dict(T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False), LM),
    ("t5-gated-silu", "T5", dict(T5, feed_forward_proj="gated-silu", num_decoder_layers=1), ["seq2seq-lm"]),
    ("mt5", "MT5", T5, ALL),
    ("bart", "Bart", BART, ALL),
    ("bart-scaled-relu", "Bart", dict(BART, scale_embedding=True, activation_function="relu"), ["seq2seq-lm"]),
    ("mbart", "MBart", BART, ALL),
    ("pegasus", "Pegasus", dict(BART, scale_embedding=True), LM),
    ("marian", "Marian", dict(BART, scale_embedding=True), LM),
    ("blenderbot", "Blenderbot", BART, LM),
    ("blenderbot-small", "BlenderbotSmall", BART, LM),
    ("m2m100", "M2M100", BART, LM),
    ("m2m100-odd", "M2M100", dict(BART, d_model=30, encoder_attention_heads=3, decoder_attention_heads=5), ["seq2seq-lm"]),
]
CASES = [pytest.param(cls, cfg, task, id=f"{fam}-{task or 'base'}") for fam, cls, cfg, tasks in FAMILIES for task in tasks]


def hf_class(prefix: str, task: str | None) -> str:
    if prefix == "Marian":
        return "MarianMTModel" if task == "seq2seq-lm" else "MarianModel"
    return prefix + BASE[task]


def make_inputs(config: dict, seed: int = 0, seq: int = 11, target: int = 6) -> dict[str, np.ndarray]:
    """Batch of 2, row 1 padded after 7 tokens; each row ends its real tokens with one eos (ids
    themselves avoid the special ids 0..2); decoder ids random, row 0 of the decoder mask padded."""
    rng = np.random.default_rng(seed)
    pad, eos = config.get("pad_token_id", 0), config.get("eos_token_id", 1)
    ids = rng.integers(3, config["vocab_size"], (2, seq))
    mask = np.ones((2, seq), np.int64)
    mask[1, 7:] = 0
    ids[mask == 0] = pad
    ids[0, -1], ids[1, 6] = eos, eos
    dec = rng.integers(3, config["vocab_size"], (2, target))
    dec_mask = np.ones((2, target), np.int64)
    dec_mask[0, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "decoder_attention_mask": dec_mask}


def config_for(config: dict, task: str | None) -> dict:
    return dict(config, num_labels=2) if task == "question-answering" else dict({"num_labels": 3}, **config)


@pytest.mark.parametrize(("cls", "config", "task"), CASES)
def test_parity(hf_checkpoint, backend, cls, config, task):
    config = config_for(config, task)
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    inputs = make_inputs(config)
    if task in ("sequence-classification", "question-answering"):
        inputs = {k: v for k, v in inputs.items() if not k.startswith("decoder_")}  # heads shift input_ids
    want = reference(hf, inputs)
    model = isoform.Model.load(path, backend=backend, task=task)
    assert record_model(model, max_diff(model(**inputs).numpy(), want)) <= TOL


def test_cases_cover_every_declared_task():
    """Each (model_type, task) an encoder-decoder architecture declares has a parity case, built from the
    transformers class the architecture names for it: a new architecture or head fails here until tested."""
    speech = set(test_speech2text.CLASSES)  # Speech2Text's own parity file: float encoder inputs
    check_task_coverage(EncoderDecoder, {hf_class(cls, task) for _, cls, _, tasks in FAMILIES for task in tasks} | speech)


@pytest.mark.parametrize(("cls", "config", "task"), [
    ("T5", T5, "seq2seq-lm"), ("T5", T5, "sequence-classification"), ("T5", dict(T5, tie_word_embeddings=False), None),
    ("Bart", BART, "seq2seq-lm"), ("Bart", BART, "question-answering"), ("MBart", BART, "sequence-classification"),
    ("Marian", BART, "seq2seq-lm"), ("M2M100", BART, "seq2seq-lm"),
])
def test_save_round_trip(hf_checkpoint, tmp_path, cls, config, task):
    """isoform save -> transformers from_pretrained -> the same outputs."""
    import transformers

    config = config_for(config, task)
    path, _ = hf_checkpoint(hf_class(cls, task), seed=1, **config)
    model = isoform.Model.load(path, task=task)
    model.save(tmp_path)
    inputs = make_inputs(config)
    if task in ("sequence-classification", "question-answering"):
        inputs = {k: v for k, v in inputs.items() if not k.startswith("decoder_")}
    back = getattr(transformers, hf_class(cls, task)).from_pretrained(tmp_path).eval()
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(back, inputs))) <= TOL


def test_graph_params_are_shared_once(hf_checkpoint):
    path, _ = hf_checkpoint(hf_class("Bart", "seq2seq-lm"), **BART)
    names = [p.name for p in isoform.Model.load(path, task="seq2seq-lm").graph.params]
    assert names.count("shared.weight") == 1 and not any("embed_tokens" in n or "lm_head" in n for n in names)


def test_bad_inputs(hf_checkpoint):
    path, _ = hf_checkpoint(hf_class("Bart", "sequence-classification"), **config_for(BART, "sequence-classification"))
    model = isoform.Model.load(path, task="sequence-classification")
    inputs = make_inputs(BART)
    with pytest.raises(InputError, match=r"input_ids has sequence length 41, longer than .* maximum 40"):
        model(input_ids=np.full((1, 41), 5))
    with pytest.raises(InputError, match=r"decoder_input_ids holds 99 .* vocab"):
        model(input_ids=inputs["input_ids"], decoder_input_ids=np.full((2, 11), 99))
    ids = inputs["input_ids"].copy()
    ids[1, 6] = 5  # row 1 has no eos left
    with pytest.raises(InputError, match=r"same, non-zero number of them, got \[1, 0\]"):
        model(input_ids=ids)
    with pytest.raises(InputError, match="unexpected input"):
        model(input_ids=ids, token_type_ids=ids)


def test_relative_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    from isoform.layers.relative_position import relative_buckets

    for buckets, distance, bidirectional in [(32, 128, True), (32, 128, False), (8, 20, True), (6, 7, False)]:
        rel = torch.arange(-distance - 5, distance + 6)
        want = T5Attention._relative_position_bucket(rel, bidirectional, buckets, distance).numpy()
        table = relative_buckets(buckets, distance, bidirectional)
        np.testing.assert_array_equal(table[np.clip(rel.numpy(), -distance, distance) + distance], want)
