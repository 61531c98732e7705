"""Parity with transformers for the BERT family (BERT, RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA,
DistilBERT, ALBERT, MPNet, Megatron-BERT, I-BERT, LayoutLM; BORT's shape of BERT):
every architecture x task head x config variation x backend, on random ids with a padded row.
Expected outputs are computed by transformers here, never pasted."""

from __future__ import annotations

import json
import shutil

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
from isoform.errors import ConfigError, InputError
from isoform.testing.coverage import check_task_coverage
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")

TOL = 1e-4
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40)
ROBERTA = dict(TINY, pad_token_id=1, type_vocab_size=1, max_position_embeddings=42)
ELECTRA = dict(TINY, embedding_size=16)
DISTIL = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=40)
ALBERT = dict(TINY, embedding_size=16, num_hidden_layers=3, hidden_act="gelu_new")
MPNET = dict(TINY, pad_token_id=1, max_position_embeddings=42, relative_attention_num_buckets=32)
IBERT = dict(TINY, pad_token_id=1, max_position_embeddings=42)  # RoBERTa positions, two token types
LAYOUTLM = dict(TINY, max_2d_position_embeddings=23)
# BORT (amazon/bort) is a BERT checkpoint: 4 layers, 16 heads, hidden 1024, intermediate 768 < hidden
BORT = dict(TINY, hidden_size=48, num_hidden_layers=4, num_attention_heads=16, intermediate_size=36, pad_token_id=1,
            type_vocab_size=1)
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
    ("megatron-bert", "MegatronBert", TINY, [*ALL, "pretraining"]),
    ("megatron-bert-relu-untied", "MegatronBert", dict(TINY, hidden_act="relu", tie_word_embeddings=False),
     ["masked-lm", "pretraining"]),
    ("megatron-bert-decoder", "MegatronBert", dict(TINY, is_decoder=True, layer_norm_eps=1e-5), [None]),
    ("ibert", "IBert", IBERT, ALL),
    ("ibert-untied-1type", "IBert", dict(IBERT, tie_word_embeddings=False, type_vocab_size=1), [None, "masked-lm"]),
    ("layoutlm", "LayoutLM", LAYOUTLM, [t for t in ALL if t != "multiple-choice"]),
    ("layoutlm-gelu_new-untied", "LayoutLM", dict(LAYOUTLM, hidden_act="gelu_new", tie_word_embeddings=False),
     ["masked-lm"]),
    ("bort", "Bert", BORT, ALL),
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
    if "max_2d_position_embeddings" in config:  # LayoutLM: random boxes (x0, y0, x1, y1), x0 <= x1, y0 <= y1
        corners = rng.integers(0, config["max_2d_position_embeddings"], (*shape, 2, 2))
        inputs["bbox"] = np.concatenate([corners.min(-2), corners.max(-2)], axis=-1)
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
    assert record_model(model, max_diff(got, want)) <= TOL


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
    model = isoform.Model.load(path)
    assert record_model(model, max_diff(model(input_ids=ids).numpy(), reference(hf, {"input_ids": ids}))) <= TOL


def test_base_model_from_task_checkpoint(hf_checkpoint):
    """AutoModel-like: a masked-LM checkpoint (no pooler, with a head) loads as the bare model."""
    path, hf = hf_checkpoint("BertForMaskedLM", **TINY)
    model = isoform.Model.load(path)
    assert list(model.graph.outputs) == ["last_hidden_state"]
    inputs = make_inputs(TINY, None)
    with torch.no_grad():
        want = hf.bert(**{k: torch.from_numpy(v) for k, v in inputs.items()}).last_hidden_state.numpy()
    assert record_model(model, float(np.abs(model(**inputs).numpy()["last_hidden_state"] - want).max())) <= TOL


@pytest.mark.parametrize(("cls", "config"), [("Bert", TINY), ("Roberta", ROBERTA), ("Electra", ELECTRA),
                                             ("DistilBert", DISTIL), ("Albert", ALBERT),
                                             ("MPNet", MPNET), ("MegatronBert", TINY), ("IBert", IBERT),
                                             ("LayoutLM", LAYOUTLM)])
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
    ("MPNet", MPNET, "multiple-choice"), ("MegatronBert", TINY, "pretraining"), ("IBert", IBERT, "masked-lm"),
    ("LayoutLM", LAYOUTLM, "sequence-classification"), pytest.param("Bert", BORT, "masked-lm", id="bort-masked-lm"),
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
    assert record_model(model, max_diff(ours, reference(back, inputs))) <= TOL
    again = isoform.Model.load(tmp_path, task=task)(**inputs).numpy()
    assert max_diff(again, ours) == 0.0


def test_to_other_backend_keeps_weights(hf_checkpoint, backend):
    path, hf = hf_checkpoint("ElectraForPreTraining", **ELECTRA)
    model = isoform.Model.load(path, task="pretraining")
    moved = model.to(backend)
    assert moved.backend.name == backend and moved.graph is model.graph
    inputs = make_inputs(ELECTRA, "pretraining")
    assert record_model(moved, max_diff(moved(**inputs).numpy(), reference(hf, inputs))) <= TOL


def test_native_inputs_and_warmup(hf_checkpoint, backend):
    path, hf = hf_checkpoint("BertForTokenClassification", **config_for(TINY, "token-classification"))
    model = isoform.Model.load(path, backend=backend, task="token-classification")
    assert model.warmup(batch=2, seq=11) >= 0
    inputs = make_inputs(TINY, "token-classification")
    native = {k: model.backend.to_native(v, isoform.ir.DType.i64) for k, v in inputs.items()}
    assert record_model(model, max_diff(model(**native).numpy(), reference(hf, inputs))) <= TOL


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


def test_ibert_skips_quantization_state(hf_checkpoint):
    """transformers saves I-BERT's quantization buffers even with quant_mode=False: skipped on load."""
    from safetensors import safe_open

    path, _ = hf_checkpoint("IBertForMaskedLM", **IBERT)
    with safe_open(path / "model.safetensors", "np") as f:
        saved = set(f.keys())
    assert {"ibert.embeddings.embeddings_act1.x_min", "ibert.encoder.layer.0.attention.self.query.weight_integer",
            "ibert.encoder.layer.0.output.LayerNorm.shift"} <= saved
    names = {p.name for p in isoform.Model.load(path, task="masked-lm").graph.params}
    assert all(n in saved or f"ibert.{n}" in saved for n in names)
    assert not any(n.endswith(("x_min", "x_max", "_integer", "scaling_factor", ".shift")) for n in names)


def test_ibert_quant_mode_is_refused(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("IBertModel", **IBERT)
    shutil.copytree(path, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, quant_mode=True)))
    with pytest.raises(ConfigError, match=r"quant_mode.*integer-only kernels are not implemented"):
        isoform.Model.load(tmp_path)


def test_layoutlm_default_bbox_is_zeros_as_transformers(hf_checkpoint):
    path, hf = hf_checkpoint("LayoutLMModel", **LAYOUTLM)
    inputs = {k: v for k, v in make_inputs(LAYOUTLM, None).items() if k != "bbox"}
    model = isoform.Model.load(path)
    assert record_model(model, max_diff(model(**inputs).numpy(), reference(hf, inputs))) <= TOL


def _bbox_set(at, value):
    def change(bbox):
        bbox[at] = value
    return change


@pytest.mark.parametrize(("change", "pattern"), [
    (_bbox_set((0, 2, 2), 23), r"bbox holds 23 at index \(0, 2, 2\), outside \[0, 23\) where 23 is max_2d_position_embeddings"),
    (_bbox_set((1, 3, 0), -1), r"bbox holds -1 at index \(1, 3, 0\), outside \[0, 23\)"),
    (_bbox_set((1, 4), [9, 2, 8, 5]), r"bbox holds \[9, 2, 8, 5\] at index \(1, 4\).*x0 <= x1 and y0 <= y1"),
    (_bbox_set((0, 1), [3, 7, 4, 6]), r"bbox holds \[3, 7, 4, 6\] at index \(0, 1\).*x0 <= x1 and y0 <= y1"),
], ids=["over-bound", "negative", "x1<x0", "y1<y0"])
def test_layoutlm_bad_bbox_names_it(hf_checkpoint, change, pattern):
    path, _ = hf_checkpoint("LayoutLMModel", **LAYOUTLM)
    model = isoform.Model.load(path)
    inputs = make_inputs(LAYOUTLM, None)
    change(inputs["bbox"])
    with pytest.raises(InputError, match=pattern):
        model(**inputs)
    with pytest.raises(InputError, match=r"bbox must have shape \[batch, seq, 4\]"):
        model(**dict(inputs, bbox=inputs["bbox"][..., :3]))
