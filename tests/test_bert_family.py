"""Parity with transformers for the BERT family (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA,
DistilBERT, ALBERT, MPNet):
every architecture x task head x config variation x backend, on random ids with a padded row.
Expected outputs are computed by transformers here, never pasted."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform.architectures import REGISTRY
from isoform.architectures.audio import AudioEncoder
from isoform.architectures.bert import Bert
from isoform.architectures.causal import CausalLM
from isoform.architectures.seq2seq import EncoderDecoder
from isoform.architectures.towers import Towers
from isoform.architectures.vision import VisionEncoder
from isoform.testing.coverage import check_task_coverage

torch = pytest.importorskip("torch")

TOL = 1e-4
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40)
ROBERTA = dict(TINY, pad_token_id=1, type_vocab_size=1, max_position_embeddings=42)
ELECTRA = dict(TINY, embedding_size=16)
DISTIL = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=40)
ALBERT = dict(TINY, embedding_size=16, num_hidden_layers=3, hidden_act="gelu_new")
MPNET = dict(TINY, pad_token_id=1, max_position_embeddings=42, relative_attention_num_buckets=32)
NO_TOKEN_TYPES = ("n_layers", "relative_attention_num_buckets")  # config keys of DistilBERT, MPNet
HEADS = {None: "Model", "masked-lm": "ForMaskedLM", "sequence-classification": "ForSequenceClassification",
         "token-classification": "ForTokenClassification", "question-answering": "ForQuestionAnswering",
         "multiple-choice": "ForMultipleChoice"}
ALL = list(HEADS)

# (case id, transformers class prefix, config, tasks)
FAMILIES = [
    ("bert", "Bert", TINY, ALL),
    ("bert-gelu_new-untied", "Bert", dict(TINY, hidden_act="gelu_new", layer_norm_eps=1e-5, tie_word_embeddings=False),
     [None, "masked-lm"]),
    ("bert-relu-regression", "Bert", dict(TINY, hidden_act="relu", num_labels=1, problem_type="regression"),
     ["sequence-classification"]),
    ("bert-multilabel", "Bert", dict(TINY, hidden_act="quick_gelu", num_labels=5,
                                     problem_type="multi_label_classification"), ["sequence-classification"]),
    ("bert-decoder", "Bert", dict(TINY, is_decoder=True, hidden_act="gelu_fast"), [None]),
    ("bert-3types", "Bert", dict(TINY, type_vocab_size=3, hidden_act="silu"), ["token-classification"]),
    ("roberta", "Roberta", ROBERTA, ALL),
    ("roberta-untied-swish", "Roberta", dict(ROBERTA, hidden_act="swish", tie_word_embeddings=False), ["masked-lm"]),
    ("xlm-roberta", "XLMRoberta", ROBERTA, ALL),
    ("camembert", "Camembert", dict(ROBERTA, pad_token_id=3), ALL),
    ("electra", "Electra", ELECTRA, [*ALL, "pretraining"]),
    ("electra-same-size-untied", "Electra", dict(TINY, embedding_size=32, tie_word_embeddings=False),
     [None, "masked-lm", "pretraining"]),
    ("electra-summary-mean", "Electra", dict(ELECTRA, summary_type="mean", summary_activation="tanh"),
     ["multiple-choice"]),
    ("distilbert", "DistilBert", DISTIL, ALL),
    ("distilbert-relu-untied", "DistilBert", dict(DISTIL, activation="relu", tie_word_embeddings=False), ["masked-lm"]),
    ("albert", "Albert", ALBERT, ALL),
    ("albert-groups", "Albert", dict(ALBERT, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2,
                                     tie_word_embeddings=False), [None, "masked-lm"]),
    ("mpnet", "MPNet", MPNET, ALL),
    ("mpnet-relu-untied", "MPNet", dict(MPNET, hidden_act="relu", tie_word_embeddings=False), ["masked-lm"]),
]
CASES = [pytest.param(fam, cls, cfg, task, id=f"{fam}-{task or 'base'}") for fam, cls, cfg, tasks in FAMILIES
         for task in tasks]


def hf_class(prefix: str, task: str | None) -> str:
    return prefix + ("ForPreTraining" if task == "pretraining" else HEADS[task])


def make_inputs(config: dict, task: str | None, seed: int = 0, seq: int = 11) -> dict[str, np.ndarray]:
    """Batch of 2 with row 1 padded after 7 tokens (multiple choice: 3 choices each)."""
    rng = np.random.default_rng(seed)
    shape = (2, 3, seq) if task == "multiple-choice" else (2, seq)
    pad = config.get("pad_token_id", 0)
    ids = rng.integers(pad + 1 if pad < 5 else 0, config["vocab_size"], shape)
    mask = np.ones(shape, np.int64)
    mask[1, ..., 7:] = 0
    ids[mask == 0] = pad
    inputs = {"input_ids": ids, "attention_mask": mask}
    if not any(k in config for k in NO_TOKEN_TYPES) and config.get("type_vocab_size", 2) > 1:
        inputs["token_type_ids"] = rng.integers(0, config.get("type_vocab_size", 2), shape)
    return inputs


def reference(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items() if isinstance(v, torch.Tensor)}


def config_for(config: dict, task: str | None) -> dict:
    return dict(config, num_labels=2) if task == "question-answering" else dict({"num_labels": 3}, **config)


def max_diff(got: dict, want: dict) -> float:
    assert set(got) == set(want), f"outputs {sorted(got)} != transformers {sorted(want)}"
    for k in got:
        assert got[k].shape == want[k].shape, f"{k}: {got[k].shape} vs {want[k].shape}"
    return max(float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in got)


@pytest.mark.parametrize(("family", "cls", "config", "task"), CASES)
def test_parity(hf_checkpoint, backend, family, cls, config, task):
    config = config_for(config, task)
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    inputs = make_inputs(config, task)
    want = reference(hf, inputs)
    model = isoform.Model.load(path, backend=backend, task=task)
    got = model(**inputs).numpy()
    assert max_diff(got, want) <= TOL


def test_cases_cover_every_declared_task():
    """Each (model_type, task) a BERT-family architecture declares has a parity case, built from the
    transformers class the architecture names for it: a new architecture or head fails here until tested."""
    check_task_coverage(Bert, {hf_class(cls, task) for _, cls, _, tasks in FAMILIES for task in tasks})


def test_every_architecture_has_a_parity_file():
    """Every registered architecture is an encoder (this file), a decoder-only LM (test_decoders.py), an
    encoder-decoder (test_seq2seq.py), an image encoder or a multi-tower model (test_vision.py): each of those files checks it
    covers its own."""
    owners = (Bert, CausalLM, EncoderDecoder, VisionEncoder, Towers, AudioEncoder)
    stray = {t: [o.__name__ for o in owners if issubclass(a, o)] for t, a in REGISTRY.items()}
    assert {t: o for t, o in stray.items() if len(o) != 1} == {}


@pytest.mark.parametrize("task", [None, "masked-lm", "multiple-choice"])
def test_bucketed_matches_unbucketed(hf_checkpoint, task):
    config = config_for(ROBERTA, task)
    path, _ = hf_checkpoint(hf_class("Roberta", task), **config)
    model = isoform.Model.load(path, task=task)
    inputs = make_inputs(config, task, seq=9)
    plain = model(**inputs).numpy()
    model.bucket = 16
    padded = model._pad(model._prepare(inputs)[0], 9)
    assert padded["input_ids"].shape[-1] == 16
    bucketed = model(**inputs).numpy()
    for k in plain:
        assert plain[k].shape == bucketed[k].shape
        np.testing.assert_allclose(bucketed[k], plain[k], atol=1e-5, rtol=0)


def test_bucket_is_capped_at_max_positions(hf_checkpoint):
    path, _ = hf_checkpoint("RobertaModel", **ROBERTA)
    model = isoform.Model.load(path)
    model.bucket = 32
    longest = ROBERTA["max_position_embeddings"] - ROBERTA["pad_token_id"] - 1
    arrays, _ = model._prepare({"input_ids": np.full((1, 33), 5)})
    assert model._pad(arrays, 33)["input_ids"].shape[-1] == longest
    assert model(input_ids=np.full((1, longest), 5))["last_hidden_state"].shape == (1, longest, 32)


def test_defaults_match_transformers(hf_checkpoint):
    """No attention_mask -> all ones; no token_type_ids -> zeros (as transformers)."""
    path, hf = hf_checkpoint("BertModel", **TINY)
    ids = make_inputs(TINY, None)["input_ids"]
    assert max_diff(isoform.Model.load(path)(input_ids=ids).numpy(), reference(hf, {"input_ids": ids})) <= TOL


def test_base_model_from_task_checkpoint(hf_checkpoint):
    """AutoModel-like: a masked-LM checkpoint (no pooler, with a head) loads as the bare model."""
    path, hf = hf_checkpoint("BertForMaskedLM", **TINY)
    model = isoform.Model.load(path)
    assert list(model.graph.outputs) == ["last_hidden_state"]
    inputs = make_inputs(TINY, None)
    with torch.no_grad():
        want = hf.bert(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert np.abs(model(**inputs).numpy()["last_hidden_state"] - want).max() <= TOL


@pytest.mark.parametrize(("cls", "config"), [("Bert", TINY), ("Roberta", ROBERTA), ("Electra", ELECTRA),
                                             ("DistilBert", DISTIL), ("Albert", ALBERT),
                                             ("MPNet", MPNET)])
def test_tied_decoder_is_one_param(hf_checkpoint, cls, config):
    path, _ = hf_checkpoint(f"{cls}ForMaskedLM", **config)
    names = [p.name for p in isoform.Model.load(path, task="masked-lm").graph.params]
    assert not any(n.endswith(("decoder.weight", "generator_lm_head.weight", "vocab_projector.weight")) for n in names)
    assert names.count("embeddings.word_embeddings.weight") == 1


@pytest.mark.parametrize(("cls", "config", "task"), [
    ("Bert", TINY, "masked-lm"), ("Bert", dict(TINY, tie_word_embeddings=False), "masked-lm"),
    ("Bert", TINY, "multiple-choice"), ("Bert", TINY, None), ("Roberta", ROBERTA, "sequence-classification"),
    ("Electra", ELECTRA, "masked-lm"), ("Electra", ELECTRA, "pretraining"), ("XLMRoberta", ROBERTA, "masked-lm"),
    ("DistilBert", DISTIL, "masked-lm"), ("Albert", dict(ALBERT, num_hidden_groups=3), "sequence-classification"),
    ("MPNet", MPNET, "multiple-choice"),
])
def test_save_round_trip(hf_checkpoint, tmp_path, cls, config, task):
    """isoform save -> transformers from_pretrained -> the same outputs (and isoform reloads it too)."""
    import transformers

    config = config_for(config, task)
    path, _ = hf_checkpoint(hf_class(cls, task), seed=1, **config)
    model = isoform.Model.load(path, task=task)
    model.save(tmp_path)
    inputs = make_inputs(config, task)
    ours = model(**inputs).numpy()
    back = getattr(transformers, hf_class(cls, task)).from_pretrained(tmp_path).eval()
    assert max_diff(ours, reference(back, inputs)) <= TOL
    again = isoform.Model.load(tmp_path, task=task)(**inputs).numpy()
    assert max_diff(again, ours) == 0.0


def test_to_other_backend_keeps_weights(hf_checkpoint, backend):
    path, hf = hf_checkpoint("ElectraForPreTraining", **ELECTRA)
    model = isoform.Model.load(path, task="pretraining")
    moved = model.to(backend)
    assert moved.backend.name == backend and moved.graph is model.graph
    inputs = make_inputs(ELECTRA, "pretraining")
    assert max_diff(moved(**inputs).numpy(), reference(hf, inputs)) <= TOL


def test_native_inputs_and_warmup(hf_checkpoint, backend):
    path, hf = hf_checkpoint("BertForTokenClassification", **config_for(TINY, "token-classification"))
    model = isoform.Model.load(path, backend=backend, task="token-classification")
    assert model.warmup(batch=2, seq=11) >= 0
    inputs = make_inputs(TINY, "token-classification")
    native = {k: model.backend.to_native(v, isoform.ir.DType.i64) for k, v in inputs.items()}
    assert max_diff(model(**native).numpy(), reference(hf, inputs)) <= TOL


def test_graph_params_follow_hf_names(hf_checkpoint):
    path, _ = hf_checkpoint("BertModel", **TINY)
    model = isoform.Model.load(path)
    names = {p.name for p in model.graph.params}
    assert "encoder.layer.0.attention.self.query.weight" in names
    assert "pooler.dense.weight" in names
    assert model.config.hidden_size == 32 and "encoder.layer.1" in str(model.graph)


def test_albert_shares_layer_params(hf_checkpoint):
    path, _ = hf_checkpoint("AlbertModel", **dict(ALBERT, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2))
    model = isoform.Model.load(path)
    parts = [p.name.split(".") for p in model.graph.params if p.name.startswith("encoder.albert_layer_groups.")]
    groups = {f"{g}.{j}" for _, _, g, _, j, *_ in parts}
    assert groups == {"0.0", "0.1", "1.0", "1.1"}  # 4 steps x 2 layers = 8 layers from 4 param sets
    matmuls = sum(n.op == "matmul" for n in model.graph.nodes)
    assert matmuls > 4 * 8
